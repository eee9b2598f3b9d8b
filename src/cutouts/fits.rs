//! Reading a cutout: gunzip with a hard cap, then the primary image HDU of a
//! FITS file (FITS 4.0 sections 3-5, only what cutouts use).
//!
//! A reader of our own rather than a FITS crate: cutouts are one primary HDU
//! of at most a few MB, and what matters here is that hostile bytes fail with
//! a clear reason before anything is allocated for them (sides checked
//! against [`Limits`], data length checked against the bytes present).

use std::io::Read;

use super::{CutoutError, Image, Limits};

const BLOCK: usize = 2880;
const CARD: usize = 80;

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

/// The header values a cutout needs.
#[derive(Debug, Default)]
struct Header {
    bitpix: Option<i64>,
    naxis: Option<i64>,
    naxis1: Option<i64>,
    naxis2: Option<i64>,
    bzero: Option<f64>,
    bscale: Option<f64>,
    blank: Option<i64>,
    rotpa: Option<f64>,
    /// Offset of the data: the block after the END card.
    data_start: usize,
}

fn parse(bytes: &[u8], limits: &Limits) -> Result<Image, CutoutError> {
    if !bytes.starts_with(b"SIMPLE  =") {
        return Err(CutoutError::NotFits);
    }
    let h = header(bytes)?;
    let bitpix = h.bitpix.ok_or(missing("BITPIX"))?;
    if ![8, 16, 32, 64, -32, -64].contains(&bitpix) {
        return Err(CutoutError::Bitpix(bitpix));
    }
    let naxis = h.naxis.ok_or(missing("NAXIS"))?;
    if naxis != 2 {
        return Err(CutoutError::Naxis(naxis));
    }
    let (w, hgt) = (
        h.naxis1.ok_or(missing("NAXIS1"))?,
        h.naxis2.ok_or(missing("NAXIS2"))?,
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
    let data = bytes
        .get(h.data_start..)
        .filter(|d| d.len() >= needed)
        .ok_or(CutoutError::Truncated {
            needed,
            got: bytes.len().saturating_sub(h.data_start),
        })?;
    let pixels = pixels(&data[..needed], bitpix, &h);
    Ok(Image {
        width,
        height,
        pixels,
        rotpa: h.rotpa,
    })
}

fn missing(key: &'static str) -> CutoutError {
    CutoutError::Header {
        key,
        why: "missing".into(),
    }
}

fn header(bytes: &[u8]) -> Result<Header, CutoutError> {
    let mut h = Header::default();
    for (i, card) in bytes.chunks_exact(CARD).enumerate() {
        let key = trim(&card[..8]);
        if key == b"END" {
            h.data_start = (i * CARD / BLOCK + 1) * BLOCK;
            return Ok(h);
        }
        if &card[8..10] != b"= " {
            continue;
        }
        let value = value(&card[10..]);
        match key {
            b"BITPIX" => h.bitpix = Some(int(value, "BITPIX")?),
            b"NAXIS" => h.naxis = Some(int(value, "NAXIS")?),
            b"NAXIS1" => h.naxis1 = Some(int(value, "NAXIS1")?),
            b"NAXIS2" => h.naxis2 = Some(int(value, "NAXIS2")?),
            b"BZERO" => h.bzero = Some(float(value, "BZERO")?),
            b"BSCALE" => h.bscale = Some(float(value, "BSCALE")?),
            b"BLANK" => h.blank = Some(int(value, "BLANK")?),
            // Informational: an unreadable ROTPA means no rotation.
            b"ROTPA" => h.rotpa = float(value, "ROTPA").ok().filter(|r| r.is_finite()),
            _ => {}
        }
    }
    Err(CutoutError::NoEndCard)
}

fn trim(s: &[u8]) -> &[u8] {
    let end = s.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    let start = s[..end].iter().position(|&b| b != b' ').unwrap_or(end);
    &s[start..end]
}

/// The value field without its comment (numbers only: no quotes to honour).
fn value(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == b'/').unwrap_or(field.len());
    trim(&field[..end])
}

fn int(v: &[u8], key: &'static str) -> Result<i64, CutoutError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CutoutError::Header {
            key,
            why: format!("not an integer: {:?}", String::from_utf8_lossy(v)),
        })
}

fn float(v: &[u8], key: &'static str) -> Result<f64, CutoutError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.replace(['D', 'd'], "E").parse().ok())
        .ok_or_else(|| CutoutError::Header {
            key,
            why: format!("not a number: {:?}", String::from_utf8_lossy(v)),
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
