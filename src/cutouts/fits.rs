//! Reading a cutout: gunzip with a hard cap, then the first HDU of a FITS
//! file that has data, as an image (FITS 4.0 sections 3-5 and 7.1, only
//! what cutouts use).
//!
//! A reader of our own rather than a FITS crate: cutouts are an image HDU
//! or three of at most a few MB, and what matters here is that hostile bytes fail with
//! a clear reason before anything is allocated for them (sides checked
//! against [`Limits`], data length checked against the bytes present).

use std::io::Read;

use super::header::{header, missing, Header, BLOCK};
use super::{CutoutError, Image, Limits};

/// Gzip (by its magic bytes `1f 8b`) or plain FITS, never by survey.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Image, CutoutError> {
    if is_gzip(bytes) {
        let fits = gunzip(bytes, limits.max_inflated_bytes)?;
        parse(&fits, limits)
    } else {
        parse(bytes, limits)
    }
}

pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Inflates `bytes`, failing as soon as the output would pass `limit`; never
/// allocates more than `limit + 1` bytes.
pub fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, CutoutError> {
    let mut decoder = flate2::read::GzDecoder::new(bytes);
    let cap = limit.saturating_add(1);
    let mut out = Vec::with_capacity(cap.min(bytes.len().saturating_mul(4).max(BLOCK * 4)));
    let mut len = 0;
    loop {
        if len == out.len() {
            if out.len() >= cap {
                return Err(CutoutError::GzipTooLarge { limit });
            }
            let grow = out.len().max(BLOCK * 4).min(cap - out.len());
            out.resize(out.len() + grow, 0);
        }
        match decoder.read(&mut out[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CutoutError::Gzip(e.to_string())),
        }
    }
    if len > limit {
        return Err(CutoutError::GzipTooLarge { limit });
    }
    out.truncate(len);
    Ok(out)
}

/// The first HDU that has data (LSST stamps: the primary; `UNCERT` and
/// `PSFIMAGE` after it are never read), when it is a 2-D image.
fn parse(bytes: &[u8], limits: &Limits) -> Result<Image, CutoutError> {
    if !bytes.starts_with(b"SIMPLE  =") {
        return Err(CutoutError::NotFits);
    }
    let primary = header(bytes)?;
    check_bitpix(&primary)?;
    let naxis = primary.naxis.ok_or(missing("NAXIS"))?;
    if naxis != 0 {
        let data = bytes.get(primary.data_start..).unwrap_or_default();
        return image(data, &primary, limits);
    }
    // An empty primary HDU: the first IMAGE extension with data. Each HDU
    // takes at least a block, so this walk is linear in the bytes.
    let mut at = primary.data_start;
    while let Some(rest) = bytes.get(at..).filter(|r| r.starts_with(b"XTENSION=")) {
        let h = header(rest)?;
        check_bitpix(&h)?;
        if h.is_image_with_data() {
            return image(rest.get(h.data_start..).unwrap_or_default(), &h, limits);
        }
        let len = h.data_len()?;
        let padded = len.div_ceil(BLOCK).saturating_mul(BLOCK);
        at = at.saturating_add(h.data_start).saturating_add(padded);
        if at > bytes.len() {
            return Err(CutoutError::Truncated {
                needed: len,
                got: rest.len().saturating_sub(h.data_start),
            });
        }
    }
    Err(CutoutError::Naxis(naxis))
}

fn check_bitpix(h: &Header) -> Result<(), CutoutError> {
    let bitpix = h.bitpix.ok_or(missing("BITPIX"))?;
    if ![8, 16, 32, 64, -32, -64].contains(&bitpix) {
        return Err(CutoutError::Bitpix(bitpix));
    }
    Ok(())
}

/// The image of the HDU with header `h`, its data unit at the start of
/// `data`: sides checked against the limits, then the length against the
/// bytes present, before anything is allocated.
fn image(data: &[u8], h: &Header, limits: &Limits) -> Result<Image, CutoutError> {
    let bitpix = h.bitpix.ok_or(missing("BITPIX"))?;
    let naxis = h.naxis.ok_or(missing("NAXIS"))?;
    if naxis != 2 {
        return Err(CutoutError::Naxis(naxis));
    }
    let (w, hgt) = (
        h.axis(1).ok_or(missing("NAXIS1"))?,
        h.axis(2).ok_or(missing("NAXIS2"))?,
    );
    let side_ok =
        |s: i64| usize::try_from(s).is_ok_and(|s| (limits.min_side..=limits.max_side).contains(&s));
    if !side_ok(w) || !side_ok(hgt) {
        return Err(CutoutError::Size {
            width: w,
            height: hgt,
            min: limits.min_side,
            max: limits.max_side,
        });
    }
    // Both sides were checked against max_side: these cannot overflow.
    let (width, height) = (w as usize, hgt as usize);
    let bytes_per = (bitpix.unsigned_abs() / 8) as usize;
    let needed = width * height * bytes_per;
    let data = data.get(..needed).ok_or(CutoutError::Truncated {
        needed,
        got: data.len(),
    })?;
    Ok(Image {
        width,
        height,
        pixels: pixels(data, bitpix, h),
        rotpa: h.rotpa,
        wcs: h.wcs.matrix(),
    })
}

/// Big-endian samples to physical values `BZERO + BSCALE * raw`; integer
/// samples equal to BLANK become NaN.
fn pixels(data: &[u8], bitpix: i64, h: &Header) -> Vec<f32> {
    let zero = h.bzero.unwrap_or(0.0);
    let scale = h.bscale.unwrap_or(1.0);
    let identity = zero == 0.0 && scale == 1.0;
    let int = |raw: i64| -> f32 {
        if h.blank == Some(raw) {
            f32::NAN
        } else {
            (zero + scale * raw as f64) as f32
        }
    };
    let float = |raw: f64| -> f32 {
        if identity {
            raw as f32
        } else {
            (zero + scale * raw) as f32
        }
    };
    match bitpix {
        8 => data.iter().map(|&b| int(i64::from(b))).collect(),
        16 => data
            .chunks_exact(2)
            .map(|c| int(i64::from(i16::from_be_bytes([c[0], c[1]]))))
            .collect(),
        32 => data
            .chunks_exact(4)
            .map(|c| int(i64::from(i32::from_be_bytes([c[0], c[1], c[2], c[3]]))))
            .collect(),
        64 => data
            .chunks_exact(8)
            .map(|c| int(i64::from_be_bytes(eight(c))))
            .collect(),
        -32 if identity => data
            .chunks_exact(4)
            .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        -32 => data
            .chunks_exact(4)
            .map(|c| float(f64::from(f32::from_be_bytes([c[0], c[1], c[2], c[3]]))))
            .collect(),
        _ => data
            .chunks_exact(8)
            .map(|c| float(f64::from_be_bytes(eight(c))))
            .collect(),
    }
}

fn eight(c: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(c);
    a
}

#[cfg(test)]
#[path = "fits_tests.rs"]
pub(crate) mod tests;
