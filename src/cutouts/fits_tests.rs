use std::io::Write;

use super::*;

/// A FITS file from header cards (END added) and raw data.
pub(crate) fn fits(cards: &[String], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for card in cards.iter().map(String::as_str).chain(["END"]) {
        out.extend_from_slice(format!("{card:<80}").as_bytes());
    }
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, b' ');
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    out
}

pub(crate) fn card(key: &str, value: &str) -> String {
    format!("{key:<8}= {value:>20} / comment")
}

fn image_cards(bitpix: i64, w: usize, h: usize) -> Vec<String> {
    vec![
        card("SIMPLE", "T"),
        card("BITPIX", &bitpix.to_string()),
        card("NAXIS", "2"),
        card("NAXIS1", &w.to_string()),
        card("NAXIS2", &h.to_string()),
    ]
}

pub(crate) fn f32_fits(w: usize, h: usize, values: impl Fn(usize) -> f32) -> Vec<u8> {
    let data: Vec<u8> = (0..w * h).flat_map(|i| values(i).to_be_bytes()).collect();
    fits(&image_cards(-32, w, h), &data)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("test setup");
    e.finish().expect("test setup")
}

fn reason(bytes: &[u8]) -> &'static str {
    decode(bytes, &Limits::default())
        .expect_err("fails")
        .reason()
}

#[test]
fn reads_floats_plain_and_gzipped() {
    let plain = f32_fits(8, 9, |i| i as f32 * 0.5);
    for bytes in [plain.clone(), gzip(&plain)] {
        let img = decode(&bytes, &Limits::default()).expect("test setup");
        assert_eq!((img.width, img.height), (8, 9));
        assert_eq!(img.pixels[3], 1.5);
        assert_eq!(img.pixels.len(), 72);
        assert_eq!(img.rotpa, None);
    }
}

#[test]
fn reads_every_bitpix_with_bzero_bscale_and_blank() {
    let n: i32 = 64;
    let raw: [(i64, Vec<u8>); 5] = [
        (8, (0..n).map(|i| i as u8).collect()),
        (16, (0..n).flat_map(|i| (i as i16).to_be_bytes()).collect()),
        (32, (0..n).flat_map(|i: i32| i.to_be_bytes()).collect()),
        (64, (0..n).flat_map(|i| (i as i64).to_be_bytes()).collect()),
        (-64, (0..n).flat_map(|i| (i as f64).to_be_bytes()).collect()),
    ];
    for (bitpix, data) in raw {
        let mut cards = image_cards(bitpix, 8, 8);
        cards.push(card("BZERO", "10.0"));
        cards.push(card("BSCALE", "2.0D0"));
        cards.push(card("ROTPA", "30.5"));
        if bitpix > 0 {
            cards.push(card("BLANK", "5"));
        }
        let img = decode(&fits(&cards, &data), &Limits::default()).expect("test setup");
        assert_eq!(img.pixels[3], 16.0, "BITPIX {bitpix}");
        assert_eq!(img.pixels[63], 136.0, "BITPIX {bitpix}");
        assert_eq!(img.pixels[5].is_nan(), bitpix > 0, "BITPIX {bitpix}");
        assert_eq!(img.rotpa, Some(30.5));
    }
}

#[test]
fn neither_gzip_nor_fits() {
    assert_eq!(reason(b""), "not_fits");
    assert_eq!(reason(b"\x89PNG\r\n\x1a\n"), "not_fits");
    // A gzip whose content is not FITS either.
    assert_eq!(reason(&gzip(b"hello")), "not_fits");
}

#[test]
fn gzip_inflating_past_the_cap() {
    let bomb = gzip(&vec![0u8; 4 << 20]);
    let limits = Limits {
        max_inflated_bytes: 1 << 20,
        ..Limits::default()
    };
    let err = decode(&bomb, &limits).expect_err("fails");
    assert_eq!(err, CutoutError::GzipTooLarge { limit: 1 << 20 });
    assert_eq!(
        gunzip(&gzip(&[7; 100]), 100).expect("test setup"),
        vec![7; 100]
    );
    assert!(gunzip(&gzip(&[7; 101]), 100).is_err());
    assert_eq!(reason(&[0x1f, 0x8b, 8, 0, 0]), "gzip");
}

#[test]
fn header_without_end() {
    let mut bytes = Vec::new();
    for c in image_cards(-32, 8, 8) {
        bytes.extend_from_slice(format!("{c:<80}").as_bytes());
    }
    bytes.resize(2880 * 2, b' ');
    assert_eq!(reason(&bytes), "no_end_card");
}

#[test]
fn naxis_not_two() {
    let mut cards = image_cards(-32, 8, 8);
    cards[2] = card("NAXIS", "3");
    assert_eq!(reason(&fits(&cards, &[0; 1024])), "naxis");
}

#[test]
fn sides_out_of_bounds() {
    for (w, h) in [(2049, 8), (8, 7), (0, 10), (64, 100_000)] {
        let bytes = fits(&image_cards(-32, w, h), &[]);
        assert_eq!(reason(&bytes), "size", "{w} x {h}");
    }
    let mut cards = image_cards(-32, 8, 8);
    cards[3] = card("NAXIS1", "-8");
    assert_eq!(reason(&fits(&cards, &[0; 256])), "size");
}

#[test]
fn bitpix_not_listed_and_bad_values() {
    assert_eq!(reason(&fits(&image_cards(12, 8, 8), &[0; 512])), "bitpix");
    let mut cards = image_cards(-32, 8, 8);
    cards[1] = card("BITPIX", "'E'");
    assert_eq!(reason(&fits(&cards, &[0; 256])), "header");
    cards.remove(1);
    assert_eq!(reason(&fits(&cards, &[0; 256])), "header");
}

#[test]
fn data_shorter_than_announced() {
    let full = f32_fits(63, 63, |i| i as f32);
    let cut = &full[..2880 + 63 * 63 * 4 - 1];
    assert_eq!(
        decode(cut, &Limits::default()).expect_err("fails"),
        CutoutError::Truncated {
            needed: 63 * 63 * 4,
            got: 63 * 63 * 4 - 1
        }
    );
    assert_eq!(reason(&full[..2880]), "truncated");
}
