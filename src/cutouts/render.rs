//! From pixel values to PNG bytes: orientation, scrubbing, normalisation,
//! stretch, interval, colour map, scaling onto the canvas, PNG encoding.

use super::colormap::{self, Lut};
use super::interval;
use super::orient::display_order;
use super::resample::{self, Axis, Filter, ONE};
use super::settings::{CutoutSettings, Interval, Stretch};
use super::{CutoutError, Image, Kind, Orientation, Stamp};

/// Values beyond this magnitude are sentinels (ZTF writes -3.4e38), not data.
const SENTINEL: f32 = 1e20;

pub fn draw(
    image: &Image,
    kind: Kind,
    orientation: Orientation,
    settings: &CutoutSettings,
) -> Result<Stamp, CutoutError> {
    let (w, h) = (image.width, image.height);
    if w == 0 || h == 0 || image.pixels.len() != w * h {
        return Err(CutoutError::Size {
            width: w as i64,
            height: h as i64,
            min: 1,
            max: usize::MAX,
        });
    }
    let (mut px, w, h, north_up_fallback) = display_order(image, orientation, settings.orientation);
    scrub(&mut px)?;
    normalise(&mut px);
    stretch(&mut px, settings.stretch.for_kind(kind));
    let (lo, hi) = limits(&px, settings);
    let lut = colormap::lut(settings.colormap);
    let size = settings.size as usize;
    let factor = resample::factor(w, h, size);
    let filter = resample::filter(w, h, size);
    let (x, y) = (
        resample::axis(w, size, factor, filter),
        resample::axis(h, size, factor, filter),
    );
    let png = if lut[255] == WHITE {
        // The map ends in white (bone, gray): scale the display values and
        // colour them after, one byte a pixel, white margins being entry
        // 255. A third of the bytes to scale and compress of the RGB path.
        let unit = to_unit(&px, lo, hi);
        let canvas = match filter {
            Filter::Nearest => {
                let index: Vec<u8> = unit.iter().map(|&v| colormap::index(v) as u8).collect();
                blocks(&index, w, &x, &y, size, 255)
            }
            Filter::Hanning => scale_values_onto_canvas(&unit, w, h, &x, &y, size),
        };
        encode_indexed(&canvas, size, lut)?
    } else {
        let rgb = colourise(&px, lo, hi, lut);
        let canvas = match filter {
            Filter::Nearest => blocks(&rgb, w, &x, &y, size, WHITE).concat(),
            Filter::Hanning => scale_onto_canvas(&rgb, w, h, &x, &y, size),
        };
        encode_png(&canvas, size)?
    };
    Ok(Stamp {
        png,
        north_up_fallback,
    })
}

const WHITE: [u8; 3] = [255, 255, 255];

/// Maps [lo, hi] to [0, 1], clipped.
fn to_unit(px: &[f32], lo: f32, hi: f32) -> Vec<f32> {
    let span = hi - lo;
    let inv = if span > 0.0 { 1.0 / span } else { 0.0 };
    px.iter()
        .map(|&v| ((v - lo) * inv).clamp(0.0, 1.0))
        .collect()
}

/// [`scale_onto_canvas`] for display values in [0, 1]: the colour-map
/// index of each canvas pixel, 255 (white) outside the image.
fn scale_values_onto_canvas(
    unit: &[f32],
    w: usize,
    h: usize,
    x: &Axis,
    y: &Axis,
    size: usize,
) -> Vec<u8> {
    let scale = 1.0 / ONE as f32;
    let stride = x.taps.len();
    let mut across = vec![0f32; h * stride];
    for (src, dst) in unit.chunks_exact(w).zip(across.chunks_exact_mut(stride)) {
        for (&(x0, x1, wx), out) in x.taps.iter().zip(dst.iter_mut()) {
            let wx = wx as f32 * scale;
            *out = src[x0] * (1.0 - wx) + src[x1] * wx;
        }
    }
    let mut canvas = vec![255u8; size * size];
    for (i, &(y0, y1, wy)) in y.taps.iter().enumerate() {
        let at = (y.first + i) * size + x.first;
        let wy = wy as f32 * scale;
        let top = &across[y0 * stride..(y0 + 1) * stride];
        let bottom = &across[y1 * stride..(y1 + 1) * stride];
        for ((out, &t), &b) in canvas[at..at + stride].iter_mut().zip(top).zip(bottom) {
            *out = colormap::index(t * (1.0 - wy) + b * wy) as u8;
        }
    }
    canvas
}

/// `nearest`: each canvas pixel takes its source pixel (blocks), `white`
/// outside the image.
fn blocks<T: Copy>(src: &[T], w: usize, x: &Axis, y: &Axis, size: usize, white: T) -> Vec<T> {
    let mut canvas = vec![white; size * size];
    for (i, &(row, _, _)) in y.taps.iter().enumerate() {
        let at = (y.first + i) * size + x.first;
        let src = &src[row * w..(row + 1) * w];
        for (out, &(col, _, _)) in canvas[at..at + x.taps.len()].iter_mut().zip(&x.taps) {
            *out = src[col];
        }
    }
    canvas
}

/// 8-bit indexed PNG with the colour map as its palette.
fn encode_indexed(indices: &[u8], size: usize, lut: &Lut) -> Result<Vec<u8>, CutoutError> {
    let png_err = |e: png::EncodingError| CutoutError::Png(e.to_string());
    let side = u32::try_from(size).map_err(|e| CutoutError::Png(e.to_string()))?;
    let mut out = Vec::with_capacity(indices.len() / 2);
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_palette(lut.iter().flatten().copied().collect::<Vec<u8>>());
    encoder.set_compression(png::Compression::Fast);
    encoder.set_filter(png::Filter::Paeth);
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(indices).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(out)
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
            // ln(1 + 1000 x), not ln_1p: glibc's logf is much faster than
            // log1pf, and for x in [0, 1] the sum loses nothing visible.
            let k = 1.0 / 1001f32.ln();
            px.iter_mut()
                .for_each(|v| *v = (1000.0 * *v + 1.0).ln() * k);
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

/// Maps [lo, hi] to [0, 1] (clipped) and through the colour map.
fn colourise(px: &[f32], lo: f32, hi: f32, lut: &Lut) -> Vec<[u8; 3]> {
    let span = hi - lo;
    let inv = if span > 0.0 { 1.0 / span } else { 0.0 };
    px.iter()
        .map(|&v| lut[colormap::index(((v - lo) * inv).clamp(0.0, 1.0))])
        .collect()
}

/// Scales the coloured image, keeping its aspect, to fill a `size` square,
/// centred on white; RGB bytes, row by row. Separable, in fixed point: each
/// source row is scaled across once (16 bits), then canvas rows blend two
/// of those; rounding errors stay below one level.
fn scale_onto_canvas(
    rgb: &[[u8; 3]],
    w: usize,
    h: usize,
    x: &Axis,
    y: &Axis,
    size: usize,
) -> Vec<u8> {
    let stride = x.taps.len() * 3;
    let mut across = vec![0u16; h * stride];
    for (src, dst) in rgb.chunks_exact(w).zip(across.chunks_exact_mut(stride)) {
        for (&(x0, x1, wx), out) in x.taps.iter().zip(dst.chunks_exact_mut(3)) {
            let (a, b) = (src[x0], src[x1]);
            for ch in 0..3 {
                let v = u32::from(a[ch]) * (ONE - wx) + u32::from(b[ch]) * wx;
                out[ch] = v as u16; // at most 255 * 256
            }
        }
    }
    let mut canvas = vec![255u8; size * size * 3];
    for (i, &(y0, y1, wy)) in y.taps.iter().enumerate() {
        let at = ((y.first + i) * size + x.first) * 3;
        let line = &mut canvas[at..at + stride];
        let top = &across[y0 * stride..(y0 + 1) * stride];
        let bottom = &across[y1 * stride..(y1 + 1) * stride];
        for ((out, &t), &b) in line.iter_mut().zip(top).zip(bottom) {
            let v = u32::from(t) * (ONE - wy) + u32::from(b) * wy;
            *out = ((v + ONE * ONE / 2) >> 16) as u8;
        }
    }
    canvas
}

/// 8-bit RGB PNG: fast compression (fdeflate) with the Paeth filter, which
/// on these smooth, upscaled images compresses best at the same speed
/// (fixtures: 26 KB a stamp against 32 KB with Up, 71 KB unfiltered).
fn encode_png(rgb: &[u8], size: usize) -> Result<Vec<u8>, CutoutError> {
    let png_err = |e: png::EncodingError| CutoutError::Png(e.to_string());
    let side = u32::try_from(size).map_err(|e| CutoutError::Png(e.to_string()))?;
    let mut out = Vec::with_capacity(rgb.len() / 2);
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    encoder.set_filter(png::Filter::Paeth);
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(rgb).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(out)
}

#[cfg(test)]
#[path = "render_tests.rs"]
pub(crate) mod tests;
