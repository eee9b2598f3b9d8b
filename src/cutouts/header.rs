//! FITS header cards (FITS 4.0 section 4): the values a cutout needs, read
//! up to the END card; numbers and the few strings used, nothing else.

use super::wcs;
use super::CutoutError;

pub const BLOCK: usize = 2880;
const CARD: usize = 80;
/// FITS allows NAXIS up to 999.
const MAX_NAXIS: usize = 999;

/// The header values a cutout needs.
#[derive(Debug, Default)]
pub struct Header {
    /// The `XTENSION` value (None for the primary HDU): `IMAGE` or another.
    pub xtension: Option<Vec<u8>>,
    pub bitpix: Option<i64>,
    pub naxis: Option<i64>,
    /// `NAXISn` at index n - 1 (n up to [`MAX_NAXIS`]).
    pub axes: Vec<Option<i64>>,
    pub pcount: Option<i64>,
    pub gcount: Option<i64>,
    pub bzero: Option<f64>,
    pub bscale: Option<f64>,
    pub blank: Option<i64>,
    pub rotpa: Option<f64>,
    pub wcs: wcs::Cards,
    /// Offset of the data from the header's start: the block after END.
    pub data_start: usize,
}

impl Header {
    pub fn axis(&self, n: usize) -> Option<i64> {
        self.axes.get(n.checked_sub(1)?).copied().flatten()
    }

    /// An HDU that has data and is an image: the primary HDU or an `IMAGE`
    /// extension whose NAXIS is not 0.
    pub fn is_image_with_data(&self) -> bool {
        let image = self.xtension.as_deref().is_none_or(|x| x == b"IMAGE");
        image && self.naxis != Some(0)
    }

    /// Bytes of the data unit without its padding (FITS 4.0 eqs. 1 and 2),
    /// to step over an HDU that is not drawn.
    pub fn data_len(&self) -> Result<usize, CutoutError> {
        let naxis = self.naxis.ok_or(missing("NAXIS"))?;
        let overflow = || CutoutError::Header {
            key: "NAXIS",
            why: "the data size overflows".into(),
        };
        let naxis = usize::try_from(naxis)
            .ok()
            .filter(|&n| n <= MAX_NAXIS)
            .ok_or_else(overflow)?;
        if naxis == 0 {
            return Ok(0);
        }
        let mut n: i64 = 1;
        for k in 1..=naxis {
            let side = self.axis(k).ok_or(missing("NAXISn"))?;
            n = n
                .checked_mul(side)
                .filter(|n| *n >= 0)
                .ok_or_else(overflow)?;
        }
        // BITPIX was checked (8 to 64 bits): at most 8 bytes a sample.
        let bytes = (self.bitpix.unwrap_or(8).unsigned_abs() / 8) as i64;
        n.checked_add(self.pcount.unwrap_or(0))
            .and_then(|n| n.checked_mul(self.gcount.unwrap_or(1)))
            .and_then(|n| n.checked_mul(bytes))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(overflow)
    }
}

pub fn missing(key: &'static str) -> CutoutError {
    CutoutError::Header {
        key,
        why: "missing".into(),
    }
}

/// The header starting at `bytes[0]`, up to its END card.
pub fn header(bytes: &[u8]) -> Result<Header, CutoutError> {
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
            b"XTENSION" => h.xtension = Some(string(value).to_vec()),
            b"BITPIX" => h.bitpix = Some(int(value, "BITPIX")?),
            b"NAXIS" => h.naxis = Some(int(value, "NAXIS")?),
            b"PCOUNT" => h.pcount = Some(int(value, "PCOUNT")?),
            b"GCOUNT" => h.gcount = Some(int(value, "GCOUNT")?),
            b"BZERO" => h.bzero = Some(float(value, "BZERO")?),
            b"BSCALE" => h.bscale = Some(float(value, "BSCALE")?),
            b"BLANK" => h.blank = Some(int(value, "BLANK")?),
            // Informational: an unreadable ROTPA means no rotation.
            b"ROTPA" => h.rotpa = float(value, "ROTPA").ok().filter(|r| r.is_finite()),
            _ => {
                if let Some(n) = naxis_n(key) {
                    if h.axes.len() < n {
                        h.axes.resize(n, None);
                    }
                    h.axes[n - 1] = Some(int(value, "NAXISn")?);
                } else {
                    // An unreadable WCS card makes the WCS unusable, not the image.
                    h.wcs.take(key, float(value, "WCS").ok());
                }
            }
        }
    }
    Err(CutoutError::NoEndCard)
}

/// "NAXIS12" -> 12 (1 to [`MAX_NAXIS`], as FITS allows).
fn naxis_n(key: &[u8]) -> Option<usize> {
    let digits = key.strip_prefix(b"NAXIS")?;
    if digits.is_empty() || digits.len() > 3 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits)
        .ok()?
        .parse()
        .ok()
        .filter(|&n| (1..=MAX_NAXIS).contains(&n))
}

fn trim(s: &[u8]) -> &[u8] {
    let end = s.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    let start = s[..end].iter().position(|&b| b != b' ').unwrap_or(end);
    &s[start..end]
}

/// The value field without its comment (numbers, and strings without a
/// `/` such as XTENSION's: no quotes to honour).
fn value(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == b'/').unwrap_or(field.len());
    trim(&field[..end])
}

/// A string value without its quotes and trailing blanks: `'IMAGE   '` -> `IMAGE`.
fn string(v: &[u8]) -> &[u8] {
    let inner = v.strip_prefix(b"'").unwrap_or(v);
    trim(inner.strip_suffix(b"'").unwrap_or(inner))
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
