//! Pure logic for kept FITS cutouts (`cutouts.keep_fits`): an alert stamp's
//! original cutout, gzipped, lives beside its PNG as
//! `<obj_id>_<type>_<SURVEY>.fits.gz` (the PNG's name with `.fits.gz` for
//! `.png`), so it shares the PNG's folder, its encoding of the obj_id and
//! its fate: placed, replaced, moved and removed with it.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::layout::{parse_file_name, stamp_file_name, ParsedName, RelPath};
use crate::surveys::ThumbnailType;

/// What ends a kept FITS file's name.
pub const FITS_SUFFIX: &str = ".fits.gz";
const PNG_SUFFIX: &str = ".png";
/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// `Content-Type` of a kept FITS under `/static`: the gzip bytes as they
/// are (no `Content-Encoding`, so a download is the `.fits.gz` file itself).
pub const FITS_CONTENT_TYPE: &str = "application/gzip";
pub const PNG_CONTENT_TYPE: &str = "image/png";

/// `<encoded obj_id>_<type>_<SURVEY>.fits.gz`: the stamp PNG's name
/// ([`stamp_file_name`]) with `.fits.gz` for `.png`.
pub fn fits_file_name(obj_id: &str, ttype: ThumbnailType, survey: &str) -> String {
    swap_suffix(&stamp_file_name(obj_id, ttype, Some(survey)))
}

fn swap_suffix(png_name: &str) -> String {
    let stem = png_name.strip_suffix(PNG_SUFFIX).unwrap_or(png_name);
    format!("{stem}{FITS_SUFFIX}")
}

impl RelPath {
    /// The kept FITS of an alert stamp: in [`RelPath::stamp`]'s folder,
    /// named by [`fits_file_name`].
    pub fn stamp_fits(obj_id: &str, ttype: ThumbnailType, survey: &str, depth: u8) -> Self {
        Self::stamp(obj_id, ttype, Some(survey), depth)
            .with_file_name(fits_file_name(obj_id, ttype, survey))
    }
}

/// The kept FITS that belongs beside the stamp PNG at `png` (a `file_uri`):
/// `None` unless the file name is one this service writes for an alert
/// stamp (with a survey), so only our own files are ever touched.
pub fn fits_beside(png: &Path) -> Option<PathBuf> {
    let name = png.file_name()?.to_str()?;
    let parsed = parse_file_name(name)?;
    parsed.survey.as_ref()?;
    Some(png.with_file_name(swap_suffix(name)))
}

/// The `public_url` of the kept FITS beside the stamp PNG whose
/// `public_url` is given (same rule as [`fits_beside`]).
pub fn fits_url_beside(public_url: &str) -> Option<String> {
    let (dir, name) = public_url.rsplit_once('/')?;
    parse_file_name(name)?.survey.as_ref()?;
    Some(format!("{dir}/{}", swap_suffix(name)))
}

/// The stamp PNG a kept FITS at `fits` belongs beside (the inverse of
/// [`fits_beside`]); `None` for a name that is not a kept FITS of ours.
pub fn png_beside(fits: &Path) -> Option<PathBuf> {
    let name = fits.file_name()?.to_str()?;
    parse_fits_name(name)?;
    let stem = name.strip_suffix(FITS_SUFFIX)?;
    Some(fits.with_file_name(format!("{stem}{PNG_SUFFIX}")))
}

/// Reads a kept FITS's name back: what its PNG's name says. `None` for
/// anything this service would not write (no survey, foreign names,
/// non-canonical encodings).
pub fn parse_fits_name(name: &str) -> Option<ParsedName> {
    let stem = name.strip_suffix(FITS_SUFFIX)?;
    let parsed = parse_file_name(&format!("{stem}{PNG_SUFFIX}"))?;
    parsed.survey.is_some().then_some(parsed)
}

/// The bytes to keep for a cutout: as they are when already gzipped (ZTF's
/// `stampData`), else gzipped here (LSST's plain FITS), at the fastest
/// level (a cutout's float pixels compress little more at higher ones).
pub fn gzip_fits(cutout: &[u8]) -> std::io::Result<Cow<'_, [u8]>> {
    if cutout.starts_with(&GZIP_MAGIC) {
        return Ok(Cow::Borrowed(cutout));
    }
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(cutout.len() / 2 + 64),
        flate2::Compression::fast(),
    );
    gz.write_all(cutout)?;
    Ok(Cow::Owned(gz.finish()?))
}

/// The `Content-Type` of a stored file, by its name.
pub fn content_type(name: &str) -> &'static str {
    if name.ends_with(FITS_SUFFIX) {
        FITS_CONTENT_TYPE
    } else {
        PNG_CONTENT_TYPE
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn the_fits_lives_beside_its_png() {
        let png = RelPath::stamp("ZTF21a", ThumbnailType::New, Some("ZTF"), 2);
        let fits = RelPath::stamp_fits("ZTF21a", ThumbnailType::New, "ZTF", 2);
        assert_eq!(fits.file_name(), "ZTF21a_new_ZTF.fits.gz");
        let root = Path::new("/srv");
        assert_eq!(fits.dir_under(root), png.dir_under(root));
        assert_eq!(
            fits.public_url(),
            png.public_url().replace(".png", ".fits.gz")
        );
        assert_eq!(
            fits_beside(&png.path_under(root)),
            Some(fits.path_under(root))
        );
        assert_eq!(
            png_beside(&fits.path_under(root)),
            Some(png.path_under(root))
        );
        assert_eq!(fits_url_beside(&png.public_url()), Some(fits.public_url()));
        assert_eq!(fits_url_beside("/static/thumbnails/aa/ZTF1_ls.png"), None);
        // Unsafe ids keep the PNG's encoding; a `_gz` type is not a suffix.
        assert_eq!(
            fits_file_name("../x", ThumbnailType::SubGz, "LSST"),
            "~2E.~2Fx_sub_gz_LSST.fits.gz"
        );
    }

    #[test]
    fn only_our_stamp_names_have_a_fits() {
        for png in [
            "/srv/thumbnails/aa/ZTF1_sdss.png", // archival: no survey
            "/srv/thumbnails/aa/notes.txt",
            "/srv/thumbnails/aa/.upload-1.tmp",
            "/srv/thumbnails/aa/a~41_new_ZTF.png", // non-canonical
            "/",
        ] {
            assert_eq!(fits_beside(Path::new(png)), None, "{png}");
        }
        for name in [
            "ZTF1_sdss.fits.gz",
            "ZTF1_new_ZTF.fits",
            "ZTF1_new_ZTF.png",
            ".ZTF1_new_ZTF.fits.gz",
            "x.fits.gz",
        ] {
            assert_eq!(parse_fits_name(name), None, "{name}");
            assert_eq!(png_beside(Path::new(name)), None, "{name}");
        }
        let p = parse_fits_name("ZTF1_ref_LSST.fits.gz").expect("ours");
        assert_eq!(
            (p.obj_id.as_deref(), p.ttype, p.survey.as_deref()),
            (Some("ZTF1"), ThumbnailType::Ref, Some("LSST"))
        );
        let long = "a".repeat(300);
        let name = fits_file_name(&long, ThumbnailType::New, "ZTF");
        assert_eq!(parse_fits_name(&name).map(|p| p.obj_id), Some(None));
    }

    #[test]
    fn plain_fits_is_gzipped_and_gzip_is_kept_as_is() {
        let plain = b"SIMPLE  =                    T".repeat(100);
        let gz = gzip_fits(&plain).expect("gzip");
        assert!(matches!(gz, Cow::Owned(_)));
        assert!(gz.starts_with(&GZIP_MAGIC));
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .expect("gunzip");
        assert_eq!(back, plain);
        let again = gzip_fits(&gz).expect("kept");
        assert!(matches!(again, Cow::Borrowed(b) if b == &gz[..]));
        assert_eq!(gzip_fits(b"").expect("empty").len(), 20);
    }

    #[test]
    fn content_types_by_name() {
        assert_eq!(content_type("ZTF1_new_ZTF.fits.gz"), "application/gzip");
        assert_eq!(content_type("ZTF1_new_ZTF.png"), "image/png");
    }
}
