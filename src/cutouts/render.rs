//! From pixel values to PNG bytes: orientation, scrubbing, normalisation,
//! stretch, interval, colour map, scaling onto the canvas, PNG encoding.

use super::colormap::{self, Lut};
use super::interval;
use super::rotate::rotate;
use super::settings::{CutoutSettings, Interval, Stretch};
use super::{CutoutError, Image, Kind, Orientation};

/// Values beyond this magnitude are sentinels (ZTF writes -3.4e38), not data.
const SENTINEL: f32 = 1e20;

pub fn draw(
    image: &Image,
    kind: Kind,
    orientation: Orientation,
    settings: &CutoutSettings,
) -> Result<Vec<u8>, CutoutError> {
    let (w, h) = (image.width, image.height);
    if w == 0 || h == 0 || image.pixels.len() != w * h {
        return Err(CutoutError::Size {
            width: w as i64,
            height: h as i64,
            min: 1,
            max: usize::MAX,
        });
    }
    let (mut px, w, h) = display_order(image, orientation);
    scrub(&mut px)?;
    normalise(&mut px);
    stretch(&mut px, settings.stretch.for_kind(kind));
    let (lo, hi) = limits(&px, settings);
    let lut = colormap::lut(settings.colormap);
    let rgb = colourise(&px, lo, hi, lut);
    let size = settings.size as usize;
    let canvas = scale_onto_canvas(&rgb, w, h, size);
    encode_png(&canvas, size)
}

/// The oriented pixels with the top displayed row first: the survey's
/// orientation, then "row 0 at the bottom" (matplotlib's `origin="lower"`).
fn display_order(image: &Image, orientation: Orientation) -> (Vec<f32>, usize, usize) {
    let (w, h) = (image.width, image.height);
    match orientation {
        // Flipped rows shown bottom-up: the stored order.
        Orientation::Ztf => (image.pixels.clone(), w, h),
        Orientation::AsStored => (flip_rows(&image.pixels, w), w, h),
        Orientation::Lsst => match image.rotpa {
            Some(rotpa) if rotpa != 0.0 => {
                let (rotated, rw, rh) = rotate(&image.pixels, w, h, -rotpa);
                (flip_rows(&rotated, rw), rw, rh)
            }
            _ => (flip_rows(&image.pixels, w), w, h),
        },
    }
}

fn flip_rows(px: &[f32], w: usize) -> Vec<f32> {
    px.rchunks_exact(w).flatten().copied().collect()
}

/// Sentinels become NaN, every NaN the mean of the finite pixels.
fn scrub(px: &mut [f32]) -> Result<(), CutoutError> {
    let (mut sum, mut n) = (0f64, 0usize);
    for v in px.iter_mut() {
        if v.abs() > SENTINEL || !v.is_finite() {
            *v = f32::NAN;
        } else {
            sum += f64::from(*v);
            n += 1;
        }
    }
    if n == 0 {
        return Err(CutoutError::AllNan);
    }
    if n < px.len() {
        let mean = (sum / n as f64) as f32;
        for v in px.iter_mut().filter(|v| v.is_nan()) {
            *v = mean;
        }
    }
    Ok(())
}

/// Min-max to [0, 1] (a constant image becomes 0).
fn normalise(px: &mut [f32]) {
    let (min, max) = px
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let span = max - min;
    if span > 0.0 && span.is_finite() {
        let inv = 1.0 / span;
        px.iter_mut().for_each(|v| *v = (*v - min) * inv);
    } else {
        px.fill(0.0);
    }
}

pub fn stretch(px: &mut [f32], stretch: Stretch) {
    match stretch {
        Stretch::Linear => {}
        Stretch::Log => {
            let k = 1.0 / 1001f32.ln();
            px.iter_mut().for_each(|v| *v = (1000.0 * *v).ln_1p() * k);
        }
        Stretch::Sqrt => px.iter_mut().for_each(|v| *v = v.max(0.0).sqrt()),
        Stretch::Asinh => {
            let k = 1.0 / 10f32.asinh();
            px.iter_mut().for_each(|v| *v = (*v * 10.0).asinh() * k);
        }
    }
}

fn limits(px: &[f32], settings: &CutoutSettings) -> (f32, f32) {
    match settings.interval {
        Interval::Zscale => interval::zscale(px),
        Interval::Percentile => {
            let mut scratch = px.to_vec();
            let p = settings.percentiles;
            let lo = interval::percentile(&mut scratch, p.low);
            let hi = interval::percentile(&mut scratch, p.high);
            (lo, hi)
        }
    }
}

/// Maps [lo, hi] to [0, 1] (clipped) and through the colour map: RGB as
/// f32, ready for interpolation.
fn colourise(px: &[f32], lo: f32, hi: f32, lut: &Lut) -> Vec<[f32; 3]> {
    let span = hi - lo;
    let inv = if span > 0.0 { 1.0 / span } else { 0.0 };
    px.iter()
        .map(|&v| {
            let x = ((v - lo) * inv).clamp(0.0, 1.0);
            lut[colormap::index(x)].map(f32::from)
        })
        .collect()
}

/// One axis of the bilinear scaling: for each canvas pixel, the two source
/// pixels and the weight of the second, or `None` outside the image.
fn taps(src: usize, canvas: usize, factor: f64) -> Vec<Option<(usize, usize, f32)>> {
    let extent = src as f64 * factor;
    let start = (canvas as f64 - extent) / 2.0;
    (0..canvas)
        .map(|o| {
            let centre = o as f64 + 0.5;
            if centre < start || centre > start + extent {
                return None;
            }
            let u = ((centre - start) / factor - 0.5).clamp(0.0, (src - 1) as f64);
            let i0 = u.floor() as usize;
            Some((i0, (i0 + 1).min(src - 1), (u - i0 as f64) as f32))
        })
        .collect()
}

/// Scales the coloured image, keeping its aspect, to fill a `size` square,
/// centred on white; RGB bytes, row by row.
fn scale_onto_canvas(rgb: &[[f32; 3]], w: usize, h: usize, size: usize) -> Vec<u8> {
    let factor = (size as f64 / w as f64).min(size as f64 / h as f64);
    let (cols, rows) = (taps(w, size, factor), taps(h, size, factor));
    let mut canvas = vec![255u8; size * size * 3];
    for (line, row) in canvas.chunks_exact_mut(size * 3).zip(&rows) {
        let Some((y0, y1, fy)) = *row else { continue };
        let (top, bottom) = (&rgb[y0 * w..(y0 + 1) * w], &rgb[y1 * w..(y1 + 1) * w]);
        for (out, col) in line.chunks_exact_mut(3).zip(&cols) {
            let Some((x0, x1, fx)) = *col else { continue };
            for ch in 0..3 {
                let t = top[x0][ch] + (top[x1][ch] - top[x0][ch]) * fx;
                let b = bottom[x0][ch] + (bottom[x1][ch] - bottom[x0][ch]) * fx;
                out[ch] = (t + (b - t) * fy + 0.5) as u8;
            }
        }
    }
    canvas
}

/// 8-bit RGB PNG, fast compression with the Up filter (smooth images).
fn encode_png(rgb: &[u8], size: usize) -> Result<Vec<u8>, CutoutError> {
    let png_err = |e: png::EncodingError| CutoutError::Png(e.to_string());
    let side = u32::try_from(size).map_err(|e| CutoutError::Png(e.to_string()))?;
    let mut out = Vec::with_capacity(rgb.len() / 2);
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    encoder.set_filter(png::Filter::Up);
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(rgb).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(out)
}

#[cfg(test)]
#[path = "render_tests.rs"]
pub(crate) mod tests;
