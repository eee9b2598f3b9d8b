//! Alert cutouts, pure: bytes in (FITS, gzipped FITS, ZTF and Rubin/LSST
//! alert packets), PNG bytes out. No tokio, no database, no file system: the
//! worker, the sidecar and the CLI all call these.
//!
//! ```text
//! decode(bytes, limits)            -> Image   gzip (1f 8b) or plain FITS, primary HDU
//! draw(image, kind, orientation, settings) -> PNG bytes
//! draw_bytes(bytes, ...)           = decode + draw
//! read_alerts(bytes, schemas, ..)  -> Alerts  ZTF / LSST packets and container files
//! ```
//!
//! Drawing follows SkyPortal's broker path (`_thumbnails.py`), so stamps look
//! the same whoever draws them:
//! 1. orientation: ZTF rows are flipped (North up); LSST is rotated by
//!    `-ROTPA` degrees as `scipy.ndimage.rotate(reshape=True, order=1,
//!    cval=0)` does (no `ROTPA` card: no rotation); others as stored;
//! 2. |x| > 1e20 (sentinels) -> NaN; NaN -> mean of the finite pixels (all
//!    NaN is [`CutoutError::AllNan`]);
//! 3. min-max normalisation to [0, 1], then the kind's stretch
//!    ([`Stretch`]: log for science and template, linear for difference);
//! 4. limits: the `percentiles` (1 and 100) of the stretched values, numpy's
//!    linear interpolation, or astropy's zscale (`interval: zscale`); mapped
//!    to [0, 1] and clipped;
//! 5. colour map (bone: 256 entries, as matplotlib), row 0 at the bottom;
//! 6. bilinear scaling, aspect kept, centred on a white `size` x `size`
//!    canvas; PNG at a fast compression. Maps that end in white (bone, gray)
//!    scale the display values and colour after, into an 8-bit indexed PNG
//!    whose palette is the map (a third of the bytes: 7,700 stamps/s on one
//!    core against 4,900, 10 KB against 26 KB, within 0.03/255 of the RGB
//!    path's accuracy); others (viridis) scale the coloured image, as
//!    matplotlib does at these factors, into 8-bit RGB.
//!
//! Every error is permanent (the same bytes fail again) and has a short
//! [`CutoutError::reason`].

pub mod alerts;
mod colormap;
mod error;
mod fits;
#[cfg(test)]
mod fixture_tests;
mod interval;
mod render;
mod rotate;
mod settings;
mod viridis;

pub use alerts::{is_packet, read_alerts, Alert, Schemas, MAX_AVRO_ALLOCATION};
pub use error::CutoutError;
pub use fits::{gunzip, is_gzip};
pub use interval::{percentile, zscale};
pub use settings::{
    Colormap, CutoutSettings, Facing, Interval, Limits, Percentiles, Stretch, Stretches,
};

/// Which of an alert's three stamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Science,
    Template,
    Difference,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Science, Kind::Template, Kind::Difference];

    /// SkyPortal's thumbnail type: `new`, `ref`, `sub`.
    pub fn ttype(self) -> &'static str {
        match self {
            Kind::Science => "new",
            Kind::Template => "ref",
            Kind::Difference => "sub",
        }
    }

    /// The ZTF alert field: `cutoutScience`, `cutoutTemplate`, `cutoutDifference`.
    pub fn field(self) -> &'static str {
        match self {
            Kind::Science => "cutoutScience",
            Kind::Template => "cutoutTemplate",
            Kind::Difference => "cutoutDifference",
        }
    }

    pub fn from_field(field: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.field() == field)
    }

    pub fn from_ttype(ttype: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.ttype() == ttype)
    }
}

/// How a survey stores its stamps, hence how to turn them North up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    /// ZTF: rows flipped.
    Ztf,
    /// LSST: rotated by -ROTPA (header card) degrees.
    Lsst,
    /// As stored (row 0 at the bottom).
    AsStored,
}

impl Orientation {
    /// `"ZTF"` -> Ztf, `"LSST"` -> Lsst (case-insensitive), anything else As stored.
    pub fn for_survey(survey: Option<&str>) -> Orientation {
        match survey {
            Some(s) if s.eq_ignore_ascii_case("ZTF") => Orientation::Ztf,
            Some(s) if s.eq_ignore_ascii_case("LSST") => Orientation::Lsst,
            _ => Orientation::AsStored,
        }
    }
}

/// A decoded cutout: row-major, row 0 first as stored in the FITS file.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    /// Physical values (BZERO + BSCALE * raw); NaN for blanks.
    pub pixels: Vec<f32>,
    /// The `ROTPA` header card, degrees, if present.
    pub rotpa: Option<f64>,
}

/// Reads a cutout: gzip or plain FITS by its magic bytes, never by survey.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Image, CutoutError> {
    fits::decode(bytes, limits)
}

/// Draws a decoded cutout as PNG bytes (`settings.size` square, RGB).
pub fn draw(
    image: &Image,
    kind: Kind,
    orientation: Orientation,
    settings: &CutoutSettings,
) -> Result<Vec<u8>, CutoutError> {
    render::draw(image, kind, orientation, settings)
}

/// [`decode`] then [`draw`], with the limits of `settings`.
pub fn draw_bytes(
    bytes: &[u8],
    kind: Kind,
    orientation: Orientation,
    settings: &CutoutSettings,
) -> Result<Vec<u8>, CutoutError> {
    let image = decode(bytes, &settings.limits())?;
    draw(&image, kind, orientation, settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_orientations_have_their_names() {
        assert_eq!(Kind::from_field("cutoutTemplate"), Some(Kind::Template));
        assert_eq!(Kind::from_field("cutout"), None);
        assert_eq!(Kind::from_ttype("sub"), Some(Kind::Difference));
        assert_eq!(Kind::Science.ttype(), "new");
        assert_eq!(Orientation::for_survey(Some("ZTF")), Orientation::Ztf);
        assert_eq!(Orientation::for_survey(Some("lsst")), Orientation::Lsst);
        assert_eq!(Orientation::for_survey(Some("PS1")), Orientation::AsStored);
        assert_eq!(Orientation::for_survey(None), Orientation::AsStored);
    }
}
