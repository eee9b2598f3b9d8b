//! Pure decode-and-classify for images fetched from survey servers (JPEG
//! for sdss and ls, PNG or JPEG elsewhere), with the same 40x40 grayscale
//! rule as uploads ([`super::is_grayscale`]). Nothing here does I/O.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader};

use super::image::{bands, png_header, Bands};

/// Largest side decoded; survey cutouts are a few hundred pixels.
pub const REMOTE_MAX_SIDE: u32 = 4096;
/// Memory the decoders may allocate (a 4096x4096 RGB image is 48 MiB).
const REMOTE_DECODE_ALLOC: u64 = 64 * 1024 * 1024;
/// Largest difference between the darkest and brightest value of every
/// channel for an image to count as blank (JPEG leaves a little noise).
const BLANK_SPREAD: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not an image ({0})")]
    NotAnImage(String),
    #[error("cannot decode the {format} image: {reason}")]
    Corrupt { format: String, reason: String },
}

/// A fetched image, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    pub width: u32,
    pub height: u32,
    /// SkyPortal's rule, as PIL sees the image's bands.
    pub is_grayscale: bool,
    /// Every pixel (nearly) the same colour: what the Legacy Survey viewer
    /// serves outside its footprint.
    pub is_blank: bool,
}

/// Decodes `bytes` (any format the `image` crate reads: JPEG, PNG, GIF,
/// BMP, WebP, TIFF) with limits and classifies it.
pub fn classify_image(bytes: &[u8]) -> Result<Classified, DecodeError> {
    let format = image::guess_format(bytes).map_err(|e| DecodeError::NotAnImage(e.to_string()))?;
    // A PNG's band count comes from its header, as PIL reads it (a palette
    // image is one band, "P", whatever its colours).
    let png_bands = match format {
        ImageFormat::Png => Some(
            png_header(bytes)
                .map(|(_, _, colour)| bands(colour))
                .map_err(|e| DecodeError::Corrupt {
                    format: "PNG".into(),
                    reason: e.to_string(),
                })?,
        ),
        _ => None,
    };
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(REMOTE_MAX_SIDE);
    limits.max_image_height = Some(REMOTE_MAX_SIDE);
    limits.max_alloc = Some(REMOTE_DECODE_ALLOC);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| DecodeError::Corrupt {
        format: format!("{format:?}"),
        reason: e.to_string(),
    })?;
    let is_grayscale = match png_bands {
        Some(Bands::One) => true,
        Some(Bands::Other) => false,
        Some(Bands::Rgb) => super::is_grayscale(&img),
        None => match img {
            // "LA" for PIL: neither one band nor RGB(A), so colour.
            DynamicImage::ImageLumaA8(_) | DynamicImage::ImageLumaA16(_) => false,
            _ => super::is_grayscale(&img),
        },
    };
    Ok(Classified {
        width: img.width(),
        height: img.height(),
        is_grayscale,
        is_blank: is_blank(&img),
    })
}

/// Whether every channel stays within [`BLANK_SPREAD`] over the image.
fn is_blank(img: &DynamicImage) -> bool {
    let rgb = img.to_rgb8();
    let mut lo = [u8::MAX; 3];
    let mut hi = [u8::MIN; 3];
    for p in rgb.pixels() {
        for c in 0..3 {
            lo[c] = lo[c].min(p.0[c]);
            hi[c] = hi[c].max(p.0[c]);
        }
        if (0..3).any(|c| hi[c].saturating_sub(lo[c]) > BLANK_SPREAD) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, RgbImage};

    fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).expect("encode");
        out.into_inner()
    }

    fn sky(colour: bool) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(200, 200, |x, y| {
            let v = ((x * 7 + y * 3) % 200) as u8;
            if colour && x < 100 {
                Rgb([255, 20, 20])
            } else {
                Rgb([v, v, v])
            }
        }))
    }

    #[test]
    fn jpeg_cutouts_are_classified_like_uploads() {
        let grey = classify_image(&encode(&sky(false), ImageFormat::Jpeg)).expect("jpeg");
        assert_eq!((grey.width, grey.height), (200, 200));
        assert!(grey.is_grayscale);
        assert!(!grey.is_blank);
        let colour = classify_image(&encode(&sky(true), ImageFormat::Jpeg)).expect("jpeg");
        assert!(!colour.is_grayscale);
        assert!(!colour.is_blank);
        // A one-band JPEG is grayscale.
        let luma = DynamicImage::ImageLuma8(GrayImage::from_fn(64, 64, |x, _| Luma([x as u8])));
        assert!(
            classify_image(&encode(&luma, ImageFormat::Jpeg))
                .expect("jpeg")
                .is_grayscale
        );
    }

    #[test]
    fn png_goes_through_the_same_rule() {
        let colour = classify_image(&encode(&sky(true), ImageFormat::Png)).expect("png");
        assert!(!colour.is_grayscale);
        let grey = classify_image(&encode(&sky(false), ImageFormat::Png)).expect("png");
        assert!(grey.is_grayscale);
    }

    #[test]
    fn a_uniform_image_is_blank() {
        for v in [0u8, 255, 128] {
            let flat = DynamicImage::ImageRgb8(RgbImage::from_pixel(256, 256, Rgb([v, v, v])));
            let c = classify_image(&encode(&flat, ImageFormat::Jpeg)).expect("jpeg");
            assert!(c.is_blank, "{v}");
        }
    }

    #[test]
    fn anything_else_is_an_error_not_a_panic() {
        assert!(matches!(
            classify_image(b"<html><body>Service unavailable</body></html>"),
            Err(DecodeError::NotAnImage(_))
        ));
        // (The JPEG decoder fills a cut JPEG with grey; a cut PNG is refused.)
        let png = encode(&sky(false), ImageFormat::Png);
        assert!(matches!(
            classify_image(&png[..png.len() / 3]),
            Err(DecodeError::Corrupt { .. })
        ));
        assert!(classify_image(b"").is_err());
        assert!(classify_image(b"\x89PNG\r\n\x1a\n").is_err());
    }
}
