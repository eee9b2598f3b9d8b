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
    let (width, height, colour) = png_header(bytes)?;
    if !(MIN_SIDE..=MAX_SIDE).contains(&width) || !(MIN_SIDE..=MAX_SIDE).contains(&height) {
        return Err(ImageError::Size { width, height });
    }
    // Decoded whatever the colour type: corrupt pixel data is refused.
    let img = decode_png(bytes)?;
    Ok(Inspected {
        width,
        height,
        is_grayscale: match bands(colour) {
            Bands::One => true,
            Bands::Rgb => is_grayscale(&img),
            Bands::Other => false,
        },
    })
}

/// How PIL (SkyPortal's decoder) sees a PNG's colour type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bands {
    /// One band: grey ("L", "1", "I;16") or palette ("P").
    One,
    /// "RGB" or "RGBA": the grayscale rule decides.
    Rgb,
    /// Grey with alpha ("LA"): neither, so colour for SkyPortal.
    Other,
}

pub(super) fn bands(colour: png::ColorType) -> Bands {
    match colour {
        png::ColorType::Grayscale | png::ColorType::Indexed => Bands::One,
        png::ColorType::Rgb | png::ColorType::Rgba => Bands::Rgb,
        png::ColorType::GrayscaleAlpha => Bands::Other,
    }
}

/// Width, height and colour type from the IHDR chunk only.
pub(super) fn png_header(bytes: &[u8]) -> Result<(u32, u32, png::ColorType), ImageError> {
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits {
            bytes: DECODE_ALLOC as usize,
        },
    );
    let info = decoder
        .read_header_info()
        .map_err(|e| ImageError::NotAnImage(format!("bad PNG header: {e}")))?;
    Ok((info.width, info.height, info.color_type))
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

/// Side of the square the grayscale rule looks at.
const GREY_SIDE: u32 = 40;

/// SkyPortal's `image_is_grayscale` for RGB(A) images: resize to 40x40;
/// remove the image's mean colour bias; the mean over pixels of the squared
/// deviation of each channel from the pixel's own grey level must be at
/// most 22. (Grey images give true; [`inspect_png`] decides other PNG
/// colour types the way SkyPortal does, before this.)
pub fn is_grayscale(img: &DynamicImage) -> bool {
    const MSE_CUTOFF: f64 = 22.0;
    if !img.color().has_color() {
        return true;
    }
    let small = match img {
        DynamicImage::ImageRgb8(b) => small_rgb(b.as_raw(), b.width(), b.height(), 3),
        DynamicImage::ImageRgba8(b) => small_rgb(b.as_raw(), b.width(), b.height(), 4),
        _ => small_rgb_reference(img),
    };
    let n = f64::from(GREY_SIDE * GREY_SIDE);
    let mut mean = [0f64; 3];
    for p in &small {
        for (m, v) in mean.iter_mut().zip(p) {
            *m += f64::from(*v);
        }
    }
    for m in &mut mean {
        *m /= n;
    }
    let grey = mean.iter().sum::<f64>() / 3.0;
    let bias = mean.map(|m| m - grey);
    let mut sse = 0.0;
    for p in &small {
        let ch = p.map(f64::from);
        let mu = ch.iter().sum::<f64>() / 3.0;
        for (v, b) in ch.iter().zip(bias) {
            let d = v - mu - b;
            sse += d * d;
        }
    }
    sse / n <= MSE_CUTOFF
}

/// The 40x40 RGB image through the `image` crate: a Catmull-Rom (bicubic,
/// like PIL's) `resize_exact`, then 8 bits per channel.
fn small_rgb_reference(img: &DynamicImage) -> Vec<[u8; 3]> {
    img.resize_exact(
        GREY_SIDE,
        GREY_SIDE,
        image::imageops::FilterType::CatmullRom,
    )
    .to_rgb8()
    .pixels()
    .map(|p| p.0)
    .collect()
}

/// [`small_rgb_reference`] for 8-bit RGB(A) pixels (`channels` 3 or 4), with
/// the same arithmetic in the same order (so the same result to the bit):
/// the `image` crate's separable resize, vertical pass first, f32 sums of
/// `value * weight` in ascending source order, then clamp and round. It
/// computes each weight table once, skips alpha in the second pass (no
/// channel depends on another) and runs both passes over many values at
/// once, which vectorises; it is compiled for AVX2 and AVX-512 too and picks
/// the best at run time (mul then add, never fused, so the bits stay).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw", "x86_64+avx2"))]
fn small_rgb(raw: &[u8], width: u32, height: u32, channels: usize) -> Vec<[u8; 3]> {
    let (w, side) = (width as usize, GREY_SIDE as usize);
    if (width, height) == (GREY_SIDE, GREY_SIDE) {
        // resize_exact copies an image already of the target size.
        return raw
            .chunks_exact(channels)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
    }
    // Vertical pass: width x 40, every channel as f32, unrounded. Columns
    // go in blocks of LANES: each block's source values are turned into f32
    // once (every source row feeds several output rows), then each output
    // value sums its taps in ascending order, starting from 0, in registers.
    const LANES: usize = 32;
    const SIDE: usize = GREY_SIDE as usize;
    let stride = w * channels;
    let vertical = weights(height, GREY_SIDE);
    // Stored column-major (all 40 output rows of a source column together)
    // so that the horizontal pass runs over 40 rows at once.
    let mut cols = vec![[0f32; SIDE]; stride];
    let mut block = vec![[0f32; LANES]; height as usize];
    for x0 in (0..stride).step_by(LANES) {
        let n = LANES.min(stride - x0);
        for (r, dst) in block.iter_mut().enumerate() {
            let src = &raw[r * stride + x0..r * stride + x0 + n];
            for (d, v) in dst.iter_mut().zip(src) {
                *d = f32::from(*v);
            }
        }
        for (outy, (left, ws)) in vertical.iter().enumerate() {
            let mut t = [0f32; LANES];
            for (src, &wt) in block[*left..*left + ws.len()].iter().zip(ws) {
                for (a, v) in t.iter_mut().zip(src) {
                    *a += *v * wt;
                }
            }
            for (col, v) in cols[x0..x0 + n].iter_mut().zip(t) {
                col[outy] = v;
            }
        }
    }
    // Horizontal pass: 40 x 40, rounded to 8 bits; each output column sums
    // its taps (ascending) for the 40 rows and 3 channels at once.
    let mut out = vec![[0u8; 3]; side * side];
    for (outx, (left, ws)) in weights(width, GREY_SIDE).into_iter().enumerate() {
        let mut t = [[0f32; SIDE]; 3];
        for (i, &wt) in ws.iter().enumerate() {
            for (c, acc) in t.iter_mut().enumerate() {
                for (a, v) in acc.iter_mut().zip(&cols[(left + i) * channels + c]) {
                    *a += *v * wt;
                }
            }
        }
        for y in 0..side {
            out[y * side + outx] = [0, 1, 2].map(|c| round_to_u8(t[c][y]));
        }
    }
    out
}

/// `v.clamp(0.0, 255.0).round() as u8` (FloatNearest: half away from zero),
/// without a call to libm's `roundf` (x86-64's baseline has no rounding
/// instruction). The fraction of a float in [0, 255] is exact.
fn round_to_u8(v: f32) -> u8 {
    let v = v.clamp(0.0, 255.0);
    let whole = v as u8;
    if v - f32::from(whole) >= 0.5 {
        whole + 1
    } else {
        whole
    }
}

/// For each output index, the first source index and the normalised
/// weights, as `image::imageops::sample` computes them for Catmull-Rom.
fn weights(src: u32, dst: u32) -> Vec<(usize, Vec<f32>)> {
    const SUPPORT: f32 = 2.0;
    let ratio = src as f32 / dst as f32;
    let sratio = if ratio < 1.0 { 1.0 } else { ratio };
    let src_support = SUPPORT * sratio;
    (0..dst)
        .map(|out| {
            let input = (out as f32 + 0.5) * ratio;
            let left = ((input - src_support).floor() as i64).clamp(0, i64::from(src) - 1);
            let right = ((input + src_support).ceil() as i64).clamp(left + 1, i64::from(src));
            let input = input - 0.5;
            let mut ws: Vec<f32> = (left..right)
                .map(|i| catmull_rom((i as f32 - input) / sratio))
                .collect();
            let mut sum = 0.0;
            for w in &ws {
                sum += w;
            }
            for w in &mut ws {
                *w /= sum;
            }
            (left as usize, ws)
        })
        .collect()
}

/// `image`'s `bc_cubic_spline(x, 0.0, 0.5)`, written the same way.
fn catmull_rom(x: f32) -> f32 {
    let (b, c) = (0.0f32, 0.5f32);
    let a = x.abs();
    let k = if a < 1.0 {
        (12.0 - 9.0 * b - 6.0 * c) * a.powi(3)
            + (-18.0 + 12.0 * b + 6.0 * c) * a.powi(2)
            + (6.0 - 2.0 * b)
    } else if a < 2.0 {
        (-b - 6.0 * c) * a.powi(3)
            + (6.0 * b + 30.0 * c) * a.powi(2)
            + (-12.0 * b - 48.0 * c) * a
            + (8.0 * b + 24.0 * c)
    } else {
        0.0
    };
    k / 6.0
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

    /// A 32x32 palette PNG, half red and half blue.
    fn palette_png() -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 32, 32);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![255, 0, 0, 0, 0, 255]);
        let mut w = enc.write_header().expect("header");
        let pixels: Vec<u8> = (0..32 * 32).map(|i| u8::from(i % 32 >= 16)).collect();
        w.write_image_data(&pixels).expect("data");
        w.finish().expect("finish");
        out
    }

    #[test]
    fn colour_types_are_classified_as_skyportal_does() {
        // PIL opens a palette PNG as one band ("P"): grayscale, even red
        // and blue.
        let palette = inspect_png(&palette_png()).expect("palette");
        assert!(palette.is_grayscale);
        // Grey with alpha ("LA") is neither one band nor RGB(A): colour.
        let la = DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_pixel(
            32,
            32,
            image::LumaA([90, 255]),
        ));
        assert!(!inspect_png(&png_of(&la)).expect("LA").is_grayscale);
        // One band: grayscale; RGB goes through the rule.
        let grey = DynamicImage::ImageLuma8(GrayImage::from_pixel(32, 32, Luma([90])));
        assert!(inspect_png(&png_of(&grey)).expect("L").is_grayscale);
        let red_blue = rgb(
            32,
            32,
            |x, _| if x < 16 { [255, 0, 0] } else { [0, 0, 255] },
        );
        assert!(!inspect_png(&png_of(&red_blue)).expect("RGB").is_grayscale);
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

    /// The fast path equals the `image` crate's resize to the bit.
    fn assert_same_small(img: &DynamicImage) {
        let fast = match img {
            DynamicImage::ImageRgb8(b) => small_rgb(b.as_raw(), b.width(), b.height(), 3),
            DynamicImage::ImageRgba8(b) => small_rgb(b.as_raw(), b.width(), b.height(), 4),
            _ => unreachable!("8-bit RGB(A) only"),
        };
        assert_eq!(
            fast,
            small_rgb_reference(img),
            "{}x{}",
            img.width(),
            img.height()
        );
    }

    #[test]
    fn fast_resize_equals_the_image_crate_on_the_test_images() {
        let few = rgb(100, 100, |x, y| {
            if x == 50 && y == 50 {
                [255, 0, 0]
            } else {
                [128, 128, 128]
            }
        });
        let many = rgb(
            100,
            100,
            |x, _| if x < 10 { [255, 0, 0] } else { [128, 128, 128] },
        );
        let checker = rgb(64, 64, |x, y| {
            if (x / 8 + y / 8) % 2 == 0 {
                [255, 0, 0]
            } else {
                [0, 0, 255]
            }
        });
        let cast = rgb(64, 64, |x, _| {
            let v = (x * 3) as u8;
            [v.saturating_add(40), v, v]
        });
        let rgba = DynamicImage::ImageRgba8(RgbaImage::from_fn(32, 32, |x, _| {
            if x < 16 {
                Rgba([0, 255, 0, 255])
            } else {
                Rgba([255, 0, 255, 255])
            }
        }));
        // The benchmark's 200x200 image.
        let bench = rgb(200, 200, |x, y| {
            let i = (y * 200 + x) * 3;
            [0, 1, 2].map(|c| ((i + c).wrapping_mul(31) % 251) as u8)
        });
        for img in [few, many, checker, cast, rgba, bench] {
            assert_same_small(&img);
        }
        for (w, h) in [
            (16, 16),
            (40, 40),
            (16, 500),
            (500, 16),
            (500, 500),
            (41, 39),
        ] {
            assert_same_small(&rgb(w, h, |x, y| {
                [(x * 7) as u8, (y * 13) as u8, ((x ^ y) * 3) as u8]
            }));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn fast_resize_equals_the_image_crate_on_random_images(
            w in 16u32..=500, h in 16u32..=500, alpha in any::<bool>(), seed in any::<u64>(), smooth in any::<bool>(),
        ) {
            // Noise, or smooth gradients with a little noise (near-grey
            // images sit close to the cutoff).
            let mut state = seed | 1;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let mut raw = Vec::new();
            let ch = if alpha { 4 } else { 3 };
            for y in 0..h {
                for x in 0..w {
                    let base = ((x * 255 / w + y * 255 / h) / 2) as u8;
                    for _ in 0..ch {
                        let r = next() as u8;
                        raw.push(if smooth { base.saturating_add(r % 8) } else { r });
                    }
                }
            }
            let img = if alpha {
                DynamicImage::ImageRgba8(RgbaImage::from_raw(w, h, raw).expect("size"))
            } else {
                DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, raw).expect("size"))
            };
            assert_same_small(&img);
        }

        #[test]
        fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..2048), png_magic in any::<bool>()) {
            if png_magic {
                bytes.splice(0..0, *b"\x89PNG\r\n\x1a\n");
            }
            let _ = inspect_png(&bytes);
        }
    }
}
