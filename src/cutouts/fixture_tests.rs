//! The real ZTF cutouts and the synthetic LSST ones of `tests/fixtures`
//! against the PNGs SkyPortal draws for them, and hostile variations of them.

use std::path::PathBuf;

use proptest::prelude::*;

use super::render::tests::rgb_of;
use super::*;

fn fixtures(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
}

fn read(dir: &str, name: &str) -> Vec<u8> {
    let path = fixtures(dir).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (directory, cutout file, kind, orientation) for every reference PNG.
fn cases() -> Vec<(&'static str, String, Kind, Orientation)> {
    let mut cases = Vec::new();
    for alert in [
        "ZTF18aaxjdyr_1661382530015060001",
        "ZTF18aagtxuc_396522680015040001",
    ] {
        for kind in Kind::ALL {
            let name = format!("{alert}_{}.fits.gz", kind.field());
            cases.push(("ztf-alerts", name, kind, Orientation::Ztf));
        }
    }
    for rotpa in [0, 30] {
        let name = format!("lsst_synthetic_rotpa{rotpa}_science.fits");
        cases.push(("lsst-synthetic", name, Kind::Science, Orientation::Lsst));
    }
    for source in [
        "7912941781254298",
        "170094456272322680",
        "170094456480989258",
    ] {
        for kind in Kind::ALL {
            let name = format!("{source}_{}.fits", kind.field());
            cases.push(("lsst-alerts", name, kind, Orientation::Lsst));
        }
    }
    cases
}

fn reference_of(name: &str) -> String {
    let stem = name.trim_end_matches(".gz").trim_end_matches(".fits");
    format!("{stem}.reference.png")
}

/// Mean absolute difference over R, G and B, in levels of 255, and the
/// largest single difference.
fn difference(ours: &[u8], theirs: &[u8]) -> (f64, u8) {
    let total: u64 = ours
        .iter()
        .zip(theirs)
        .map(|(&a, &b)| u64::from(a.abs_diff(b)))
        .sum();
    let max = ours.iter().zip(theirs).map(|(&a, &b)| a.abs_diff(b)).max();
    (total as f64 / ours.len() as f64, max.unwrap_or(0))
}

/// Each stamp within 2.5/255 of SkyPortal's drawing, 1.5/255 on average
/// (issue 20; a check on 42 more ZTF stamps found some at 3.0-3.3 with
/// bilinear smoothing, hence the margin).
#[test]
fn draws_what_skyportal_draws() {
    let settings = CutoutSettings::default();
    let (mut worst, mut sum, mut n) = (0f64, 0f64, 0usize);
    // Per directory: (worst, sum, count).
    let mut families: Vec<(&str, f64, f64, usize)> = Vec::new();
    for (dir, name, kind, orientation) in cases() {
        let png = draw_bytes(&read(dir, &name), kind, orientation, &settings).expect("test setup");
        let (w, h, ours) = rgb_of(&png);
        let (rw, rh, theirs) = rgb_of(&read(dir, &reference_of(&name)));
        assert_eq!((w, h), (rw, rh), "{name}");
        let (mean, max) = difference(&ours, &theirs);
        println!("{name}: mean |diff| {mean:.3}/255, max {max}");
        worst = worst.max(mean);
        sum += mean;
        n += 1;
        match families.iter_mut().find(|f| f.0 == dir) {
            Some(f) => (f.1, f.2, f.3) = (f.1.max(mean), f.2 + mean, f.3 + 1),
            None => families.push((dir, mean, mean, 1)),
        }
        assert!(mean <= 2.5, "{name}: mean |diff| {mean:.3} > 2.5");
    }
    for (dir, worst, sum, n) in families {
        println!(
            "{dir}: {n} stamps, worst {worst:.3}/255, mean {:.3}/255",
            sum / n as f64
        );
    }
    let mean = sum / n as f64;
    println!("{n} stamps: worst mean |diff| {worst:.3}/255, mean {mean:.3}/255");
    assert_eq!(n, 17);
    assert!(mean <= 1.5, "mean over the stamps {mean:.3} > 1.5");
}

/// `skyportal` never looks at the WCS: the fixtures draw the same bytes
/// with it removed, and `draw_stamp` reports no fallback.
#[test]
fn skyportal_drawing_ignores_the_wcs() {
    let settings = CutoutSettings::default();
    for (dir, name, kind, orientation) in cases() {
        let bytes = read(dir, &name);
        let stamp = draw_stamp(&bytes, kind, orientation, &settings).expect("test setup");
        assert!(!stamp.north_up_fallback, "{name}");
        let mut image = decode(&bytes, &settings.limits()).expect("test setup");
        assert_eq!(image.wcs.is_some(), dir == "lsst-alerts", "{name}");
        image.wcs = None;
        let without = draw(&image, kind, orientation, &settings).expect("test setup");
        assert!(without == stamp.png, "{name}");
    }
}

/// Rubin's stamps have no mirror in their WCS, and ROTPA is its angle to
/// a quarter degree: North up is SkyPortal's drawing turned by the WCS's
/// angle instead of ROTPA, for all three packets (the v9 one has no ROTPA).
#[test]
fn lsst_north_up_is_the_rotpa_drawing_at_the_wcs_angle() {
    let north_up = CutoutSettings {
        orientation: Facing::NorthUp,
        ..CutoutSettings::default()
    };
    let skyportal = CutoutSettings::default();
    for (dir, name, kind, orientation) in cases() {
        if dir != "lsst-alerts" {
            continue;
        }
        let bytes = read(dir, &name);
        let stamp = draw_stamp(&bytes, kind, orientation, &north_up).expect("test setup");
        assert!(!stamp.north_up_fallback, "{name}");
        let mut image = decode(&bytes, &skyportal.limits()).expect("test setup");
        let turn = super::wcs::north_up(image.wcs.expect("a WCS"), 30, 30);
        assert!(!turn.mirror, "{name}");
        if let Some(rotpa) = image.rotpa {
            assert!((turn.degrees - rotpa).abs() < 0.3, "{name}: {turn:?}");
        }
        image.rotpa = Some(turn.degrees);
        let turned = draw(&image, kind, Orientation::Lsst, &skyportal).expect("test setup");
        assert!(turned == stamp.png, "{name}");
    }
}

fn cutout_bytes() -> Vec<Vec<u8>> {
    let gz = read(
        "ztf-alerts",
        "ZTF18aagtxuc_396522680015040001_cutoutScience.fits.gz",
    );
    let plain = read("lsst-synthetic", "lsst_synthetic_rotpa30_science.fits");
    // Three HDUs: mutations that empty the primary walk the extensions.
    let rubin = read("lsst-alerts", "170094456272322680_cutoutTemplate.fits");
    vec![gz, plain, rubin]
}

fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    for &(at, value) in edits {
        let len = bytes.len();
        if len > 0 {
            bytes[at % len] = value;
        }
    }
    let len = bytes.len();
    bytes.truncate(len - cut % (len + 1));
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_cutouts_never_panic(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
    ) {
        let bytes = mutate(cutout_bytes().swap_remove(which), &edits, cut);
        let settings = CutoutSettings::default();
        for orientation in [Orientation::Ztf, Orientation::Lsst] {
            let _ = draw_bytes(&bytes, Kind::Science, orientation, &settings);
        }
        // The header region mutated as plain FITS too.
        if which == 0 {
            if let Ok(plain) = gunzip(&bytes, settings.max_inflated_bytes) {
                let plain = mutate(plain, &edits, cut);
                let _ = draw_bytes(&plain, Kind::Difference, Orientation::Ztf, &settings);
            }
        }
    }
}

#[test]
fn hostile_fits_headers_fail_cleanly() {
    use super::fits::tests::{card, fits};
    // A huge image announced, almost no data: no allocation for it.
    let cards = [
        card("SIMPLE", "T"),
        card("BITPIX", "-64"),
        card("NAXIS", "2"),
        card("NAXIS1", "2048"),
        card("NAXIS2", "2048"),
    ];
    assert_eq!(
        decode(&fits(&cards, &[1; 100]), &Limits::default())
            .expect_err("fails")
            .reason(),
        "truncated"
    );
}

#[test]
fn a_rubin_stamp_whose_primary_is_emptied_draws_its_next_image() {
    let mut bytes = read("lsst-alerts", "7912941781254298_cutoutTemplate.fits");
    let card = b"NAXIS   =                    2";
    let at = bytes
        .windows(card.len())
        .position(|w| w == card)
        .expect("test setup");
    bytes[at + card.len() - 1] = b'0';
    // The primary's data now reads as the next header: not an XTENSION, so
    // nothing else is drawn and the empty primary is the reason.
    assert_eq!(
        decode(&bytes, &Limits::default())
            .expect_err("fails")
            .reason(),
        "naxis"
    );
}
