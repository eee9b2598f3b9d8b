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
    cases
}

fn reference_of(name: &str) -> String {
    let stem = name.trim_end_matches(".gz").trim_end_matches(".fits");
    format!("{stem}.reference.png")
}

#[test]
fn draws_what_skyportal_draws() {
    let settings = CutoutSettings::default();
    let mut worst: f64 = 0.0;
    for (dir, name, kind, orientation) in cases() {
        let png = draw_bytes(&read(dir, &name), kind, orientation, &settings).expect("test setup");
        let (w, h, ours) = rgb_of(&png);
        let (rw, rh, theirs) = rgb_of(&read(dir, &reference_of(&name)));
        assert_eq!((w, h), (rw, rh), "{name}");
        let total: u64 = ours
            .iter()
            .zip(&theirs)
            .map(|(&a, &b)| u64::from(a.abs_diff(b)))
            .sum();
        let mean = total as f64 / ours.len() as f64;
        let max = ours.iter().zip(&theirs).map(|(&a, &b)| a.abs_diff(b)).max();
        println!("{name}: mean |diff| {mean:.3}/255, max {max:?}");
        worst = worst.max(mean);
        assert!(mean <= 3.0, "{name}: mean |diff| {mean:.3} > 3.0");
    }
    println!("worst mean |diff| {worst:.3}/255");
}

fn cutout_bytes() -> Vec<Vec<u8>> {
    let gz = read(
        "ztf-alerts",
        "ZTF18aagtxuc_396522680015040001_cutoutScience.fits.gz",
    );
    let plain = read("lsst-synthetic", "lsst_synthetic_rotpa30_science.fits");
    vec![gz, plain]
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
        which in 0usize..2,
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
