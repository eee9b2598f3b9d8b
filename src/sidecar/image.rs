//! Pure image checks for uploads, in SkyPortal's order and with its
//! messages, and SkyPortal's grayscale rule. Nothing here does I/O.
//!
//! The PNG header is read for the size before any pixel is decoded; an
//! image whose header claims more than 500x500 is never decoded.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader};

/// Smallest and largest accepted side, in pixels.
pub const MIN_SIDE: u32 = 16;
pub const MAX_SIDE: u32 = 500;

/// Memory the decoders may allocate; a 500x500 RGBA16 image needs 2 MB.
const DECODE_ALLOC: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("Invalid file type: cannot identify image file ({0})")]
    NotAnImage(String),
    #[error("Invalid thumbnail image type. Only PNG are supported.")]
    NotPng,
    #[error("Invalid thumbnail size. Only thumbnails between ({MIN_SIDE}, {MIN_SIDE}) and ({MAX_SIDE}, {MAX_SIDE}) allowed.")]
    Size { width: u32, height: u32 },
}

/// A PNG that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspected {
    pub width: u32,
    pub height: u32,
    pub is_grayscale: bool,
}

/// Checks that `bytes` are a PNG of an accepted size, then decodes it (with
/// limits) and classifies it as grayscale or colour.
pub fn inspect_png(bytes: &[u8]) -> Result<Inspected, ImageError> {
    match image::guess_format(bytes) {
        Ok(ImageFormat::Png) => {}
        Ok(_) => return Err(ImageError::NotPng),
        Err(_) => return Err(ImageError::NotAnImage("unknown format".into())),
    }
    let (width, height) = png_size(bytes)?;
    if !(MIN_SIDE..=MAX_SIDE).contains(&width) || !(MIN_SIDE..=MAX_SIDE).contains(&height) {
        return Err(ImageError::Size { width, height });
    }
    let img = decode_png(bytes)?;
    Ok(Inspected {
        width,
        height,
        is_grayscale: is_grayscale(&img),
    })
}

/// Width and height from the IHDR chunk only.
pub fn png_size(bytes: &[u8]) -> Result<(u32, u32), ImageError> {
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits {
            bytes: DECODE_ALLOC as usize,
        },
    );
    let info = decoder
        .read_header_info()
        .map_err(|e| ImageError::NotAnImage(format!("bad PNG header: {e}")))?;
    Ok((info.width, info.height))
}

fn decode_png(bytes: &[u8]) -> Result<DynamicImage, ImageError> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(DECODE_ALLOC);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), ImageFormat::Png);
    reader.limits(limits);
    reader
        .decode()
        .map_err(|e| ImageError::NotAnImage(format!("bad PNG data: {e}")))
}

/// SkyPortal's `image_is_grayscale`: resize to 40x40; remove the image's
/// mean colour bias; the mean over pixels of the squared deviation of each
/// channel from the pixel's own grey level must be at most 22.
/// Grey images (with or without alpha) are grayscale.
pub fn is_grayscale(img: &DynamicImage) -> bool {
    const SIDE: u32 = 40;
    const MSE_CUTOFF: f64 = 22.0;
    if !img.color().has_color() {
        return true;
    }
    let small = img
        .resize_exact(SIDE, SIDE, image::imageops::FilterType::CatmullRom)
        .to_rgb8();
    let n = f64::from(SIDE * SIDE);
    let mut mean = [0f64; 3];
    for p in small.pixels() {
        for (m, v) in mean.iter_mut().zip(p.0) {
            *m += f64::from(v);
        }
    }
    for m in &mut mean {
        *m /= n;
    }
    let grey = mean.iter().sum::<f64>() / 3.0;
    let bias = mean.map(|m| m - grey);
    let mut sse = 0.0;
    for p in small.pixels() {
        let ch = p.0.map(f64::from);
        let mu = ch.iter().sum::<f64>() / 3.0;
        for (v, b) in ch.iter().zip(bias) {
            let d = v - mu - b;
            sse += d * d;
        }
    }
    sse / n <= MSE_CUTOFF
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};
    use proptest::prelude::*;

    fn png_of(img: &DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).expect("encode");
        out.into_inner()
    }

    fn rgb(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| Rgb(f(x, y))))
    }

    #[test]
    fn pure_grey_is_grayscale() {
        assert!(is_grayscale(&rgb(64, 64, |x, y| {
            let v = ((x * 3 + y * 5) % 256) as u8;
            [v, v, v]
        })));
        assert!(is_grayscale(&DynamicImage::ImageLuma8(
            GrayImage::from_pixel(20, 20, Luma([7]))
        )));
    }

    #[test]
    fn a_colour_cast_is_still_grayscale() {
        // A uniform tint is removed as bias.
        assert!(is_grayscale(&rgb(64, 64, |x, _| {
            let v = (x * 3) as u8;
            [v.saturating_add(40), v, v]
        })));
    }

    #[test]
    fn pure_colour_is_colour() {
        assert!(!is_grayscale(&rgb(64, 64, |x, y| {
            if (x / 8 + y / 8) % 2 == 0 {
                [255, 0, 0]
            } else {
                [0, 0, 255]
            }
        })));
        let rgba = RgbaImage::from_fn(32, 32, |x, _| {
            if x < 16 {
                Rgba([0, 255, 0, 255])
            } else {
                Rgba([255, 0, 255, 255])
            }
        });
        assert!(!is_grayscale(&DynamicImage::ImageRgba8(rgba)));
    }

    #[test]
    fn grey_with_a_few_coloured_pixels() {
        // A handful of coloured pixels is below the cutoff ...
        let few = rgb(100, 100, |x, y| {
            if x == 50 && y == 50 {
                [255, 0, 0]
            } else {
                [128, 128, 128]
            }
        });
        assert!(is_grayscale(&few));
        // ... a coloured tenth of the image is not.
        let many = rgb(
            100,
            100,
            |x, _| if x < 10 { [255, 0, 0] } else { [128, 128, 128] },
        );
        assert!(!is_grayscale(&many));
    }

    #[test]
    fn checks_in_skyportal_order() {
        assert!(matches!(
            inspect_png(b"hello"),
            Err(ImageError::NotAnImage(_))
        ));
        let e = inspect_png(b"hello").expect_err("not an image").to_string();
        assert!(e.contains("cannot identify image file"), "{e}");

        let mut jpeg = Cursor::new(Vec::new());
        rgb(32, 32, |_, _| [1, 2, 3])
            .write_to(&mut jpeg, ImageFormat::Jpeg)
            .expect("jpeg");
        assert_eq!(inspect_png(jpeg.get_ref()), Err(ImageError::NotPng));

        for (w, h) in [(15, 100), (100, 15), (501, 100), (100, 501)] {
            let e = inspect_png(&png_of(&rgb(w, h, |_, _| [0, 0, 0]))).expect_err("size");
            assert_eq!(
                e,
                ImageError::Size {
                    width: w,
                    height: h
                }
            );
            assert_eq!(
                e.to_string(),
                "Invalid thumbnail size. Only thumbnails between (16, 16) and (500, 500) allowed."
            );
        }
        for (w, h) in [(16, 16), (500, 500), (16, 500)] {
            let ok = inspect_png(&png_of(&rgb(w, h, |_, _| [9, 9, 9]))).expect("valid");
            assert_eq!((ok.width, ok.height, ok.is_grayscale), (w, h, true));
        }
        let colour = inspect_png(&png_of(&rgb(32, 32, |x, _| {
            if x % 2 == 0 {
                [255, 0, 0]
            } else {
                [0, 255, 0]
            }
        })))
        .expect("valid");
        assert!(!colour.is_grayscale);
    }

    #[test]
    fn truncated_pngs_are_refused() {
        let good = png_of(&rgb(64, 64, |x, y| [x as u8, y as u8, 0]));
        // Any cut before the final IEND chunk (12 bytes) loses image data.
        for cut in 0..good.len() - 12 {
            assert!(inspect_png(&good[..cut]).is_err(), "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..2048), png_magic in any::<bool>()) {
            if png_magic {
                bytes.splice(0..0, *b"\x89PNG\r\n\x1a\n");
            }
            let _ = inspect_png(&bytes);
        }
    }
}
