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

/// An extension HDU: header cards (END added) and data, block-padded.
fn extension(xtension: &str, cards: &[String], data: &[u8]) -> Vec<u8> {
    let mut all = vec![card("XTENSION", &format!("'{xtension:<8}'"))];
    all.extend_from_slice(cards);
    fits(&all, data)
}

fn empty_primary() -> Vec<u8> {
    fits(
        &[
            card("SIMPLE", "T"),
            card("BITPIX", "8"),
            card("NAXIS", "0"),
            card("EXTEND", "T"),
        ],
        &[],
    )
}

fn ext_cards(bitpix: i64, w: usize, h: usize) -> Vec<String> {
    vec![
        card("BITPIX", &bitpix.to_string()),
        card("NAXIS", "2"),
        card("NAXIS1", &w.to_string()),
        card("NAXIS2", &h.to_string()),
        card("PCOUNT", "0"),
        card("GCOUNT", "1"),
    ]
}

fn floats(n: usize, f: impl Fn(usize) -> f32) -> Vec<u8> {
    (0..n).flat_map(|i| f(i).to_be_bytes()).collect()
}

#[test]
fn an_empty_primary_draws_the_first_image_extension_with_data() {
    let mut bytes = empty_primary();
    // A table first (skipped over by its size), then an empty image, then
    // the image, then another image that must not be read.
    let mut table = vec![
        card("BITPIX", "8"),
        card("NAXIS", "2"),
        card("NAXIS1", "12"),
        card("NAXIS2", "300"),
        card("PCOUNT", "7"),
        card("GCOUNT", "1"),
    ];
    table.push(card("TFIELDS", "1"));
    bytes.extend(extension("BINTABLE", &table, &[9; 12 * 300 + 7]));
    bytes.extend(extension(
        "IMAGE",
        &[card("BITPIX", "-32"), card("NAXIS", "0")],
        &[],
    ));
    let mut cards = ext_cards(-32, 8, 9);
    cards.push(card("PC1_1", "-1.0"));
    cards.push(card("CDELT2", "2.0"));
    cards.push(card("ROTPA", "12.5"));
    bytes.extend(extension("IMAGE", &cards, &floats(72, |i| i as f32)));
    bytes.extend(extension(
        "IMAGE",
        &ext_cards(-32, 16, 16),
        &floats(256, |_| 5.0),
    ));
    let img = decode(&bytes, &Limits::default()).expect("test setup");
    assert_eq!((img.width, img.height), (8, 9));
    assert_eq!(img.pixels[71], 71.0);
    assert_eq!(img.rotpa, Some(12.5));
    assert_eq!(img.wcs, Some([[-1.0, 0.0], [0.0, 2.0]]));
}

#[test]
fn an_empty_primary_without_an_image_is_refused() {
    assert_eq!(reason(&empty_primary()), "naxis");
    let mut bytes = empty_primary();
    bytes.extend(extension(
        "IMAGE",
        &[card("BITPIX", "-32"), card("NAXIS", "0")],
        &[],
    ));
    assert_eq!(reason(&bytes), "naxis");
    // The extension drawn keeps every check: NAXIS 3, sides, truncation.
    let mut cube = ext_cards(-32, 8, 8);
    cube[1] = card("NAXIS", "3");
    cube.push(card("NAXIS3", "2"));
    let mut bytes = empty_primary();
    bytes.extend(extension("IMAGE", &cube, &floats(128, |_| 1.0)));
    assert_eq!(reason(&bytes), "naxis");
    let mut bytes = empty_primary();
    bytes.extend(extension("IMAGE", &ext_cards(-32, 4096, 8), &[]));
    assert_eq!(reason(&bytes), "size");
    let mut bytes = empty_primary();
    let full = extension("IMAGE", &ext_cards(-32, 63, 63), &floats(63 * 63, |_| 1.0));
    bytes.extend_from_slice(&full[..2880 + 100]);
    assert_eq!(reason(&bytes), "truncated");
}

#[test]
fn a_skipped_extension_announcing_too_much_fails_cleanly() {
    for (naxis1, why) in [
        ("2000000000", "truncated"),
        ("9223372036854775807", "header"),
    ] {
        let mut bytes = empty_primary();
        let mut table = ext_cards(8, 0, 2000000000);
        table[2] = card("NAXIS1", naxis1);
        bytes.extend(extension("BINTABLE", &table, &[0; 100]));
        assert_eq!(reason(&bytes), why, "NAXIS1 {naxis1}");
    }
    let mut bytes = empty_primary();
    let mut table = ext_cards(8, 4, 4);
    table[1] = card("NAXIS", "100000");
    bytes.extend(extension("BINTABLE", &table, &[]));
    assert_eq!(reason(&bytes), "header");
}

#[test]
fn lsst_stamps_read_the_primary_and_its_pc_matrix() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lsst-alerts/170094456272322680_cutoutTemplate.fits");
    let bytes = std::fs::read(path).expect("test setup");
    let img = decode(&bytes, &Limits::default()).expect("test setup");
    // PSFIMAGE after it is 55 x 55: the primary's 30 x 30 is drawn.
    assert_eq!((img.width, img.height), (30, 30));
    assert_eq!(img.rotpa, Some(41.5831256817286));
    let m = img.wcs.expect("a PC matrix");
    assert_eq!(m[0][0], -4.1743119295891e-5);
    assert_eq!(m[1][0], 3.6705393091321e-5);
}

#[test]
fn cd_cards_and_unreadable_wcs() {
    let mut cards = image_cards(-32, 8, 8);
    cards.extend([card("CD1_1", "-2.0E-4"), card("CD2_2", "2.0E-4")]);
    let img = decode(&fits(&cards, &[0; 256]), &Limits::default()).expect("test setup");
    assert_eq!(img.wcs, Some([[-2.0e-4, 0.0], [0.0, 2.0e-4]]));
    cards.push(card("CD1_2", "'x'"));
    let img = decode(&fits(&cards, &[0; 256]), &Limits::default()).expect("test setup");
    assert_eq!(img.wcs, None, "an unreadable card: no WCS, but the image");
    let img = decode(&f32_fits(8, 8, |_| 0.0), &Limits::default()).expect("test setup");
    assert_eq!(img.wcs, None);
}
