//! `orientation: north_up` on synthetic stamps whose WCS is known: a bright
//! spot to the North of the centre and a dimmer one to the East must land
//! above and to the left of the canvas centre, whatever the rotation and
//! handedness of the WCS.

use super::display_order;
use crate::cutouts::fits::tests::{card, f32_fits, fits};
use crate::cutouts::render::tests::rgb_of;
use crate::cutouts::*;

const SIDE: usize = 41;

/// The WCS matrix of a detector turned by `degrees`, mirrored or not:
/// degrees per pixel, East = -x when not mirrored (CDELT1 < 0).
fn matrix(degrees: f64, mirrored: bool) -> [[f64; 2]; 2] {
    let (s, c) = degrees.to_radians().sin_cos();
    let east = if mirrored { 1.0 } else { -1.0 };
    let scale = 5e-5;
    // World = diag(east, 1) . R(degrees) . pixel offset.
    [
        [east * c * scale, -east * s * scale],
        [s * scale, c * scale],
    ]
}

/// The pixel offset (column, row) that points `world` (East, North) away.
fn offset(m: [[f64; 2]; 2], world: [f64; 2]) -> (i64, i64) {
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    let dx = (m[1][1] * world[0] - m[0][1] * world[1]) / det;
    let dy = (-m[1][0] * world[0] + m[0][0] * world[1]) / det;
    (dx.round() as i64, dy.round() as i64)
}

/// A FITS stamp with WCS `m`: 3 x 3 spots, 1000 nine pixels North of the
/// centre and 400 nine pixels East of it, on 0.
fn stamp(m: [[f64; 2]; 2]) -> Vec<u8> {
    let k = 9.0 * 5e-5;
    let centre = (SIDE / 2) as i64;
    let spots = [(offset(m, [0.0, k]), 1000.0), (offset(m, [k, 0.0]), 400.0)];
    let mut px = vec![0f32; SIDE * SIDE];
    for ((dx, dy), value) in spots {
        for (x, y) in (-1..=1).flat_map(|a| (-1..=1).map(move |b| (a, b))) {
            let (col, row) = (centre + dx + x, centre + dy + y);
            px[row as usize * SIDE + col as usize] = value;
        }
    }
    let mut cards = vec![
        card("SIMPLE", "T"),
        card("BITPIX", "-32"),
        card("NAXIS", "2"),
        card("NAXIS1", &SIDE.to_string()),
        card("NAXIS2", &SIDE.to_string()),
    ];
    for (i, row) in m.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            cards.push(card(&format!("CD{}_{}", i + 1, j + 1), &format!("{v:E}")));
        }
    }
    let data: Vec<u8> = px.iter().flat_map(|v| v.to_be_bytes()).collect();
    fits(&cards, &data)
}

fn north_up() -> CutoutSettings {
    CutoutSettings {
        orientation: Facing::NorthUp,
        colormap: Colormap::Gray,
        ..CutoutSettings::default()
    }
}

/// Centroid (x, y) of the canvas pixels whose grey is in `range`, away
/// from `avoid` (a spot's soft edge is not the other spot).
fn centroid(
    grey: &[u8],
    range: std::ops::RangeInclusive<u8>,
    avoid: Option<(f64, f64)>,
) -> (f64, f64) {
    let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
    for (i, g) in grey.iter().enumerate() {
        let (x, y) = ((i % 168) as f64, (i / 168) as f64);
        let far = avoid.is_none_or(|(ax, ay)| (x - ax).hypot(y - ay) > 16.0);
        if range.contains(g) && far {
            (sx, sy, n) = (sx + x, sy + y, n + 1.0);
        }
    }
    assert!(n > 0.0, "no pixel in {range:?}");
    (sx / n, sy / n)
}

#[test]
fn north_is_up_and_east_left_at_any_rotation_and_handedness() {
    for mirrored in [false, true] {
        for degrees in [0.0, 30.0, 45.0, 90.0, 137.0, 180.0, 250.0, 270.0, 333.0] {
            let m = matrix(degrees, mirrored);
            let stamp = draw_stamp(&stamp(m), Kind::Difference, Orientation::Ztf, &north_up())
                .expect("test setup");
            assert!(!stamp.north_up_fallback);
            let (_, _, rgb) = rgb_of(&stamp.png);
            let grey: Vec<u8> = rgb.chunks_exact(3).map(|p| p[0]).collect();
            let bright = centroid(&grey, 230..=255, None);
            let dim = centroid(&grey, 80..=125, Some(bright));
            let case =
                format!("{degrees} degrees, mirrored {mirrored}: bright {bright:?}, dim {dim:?}");
            // Nine stamp pixels are 25 to 37 canvas pixels, as the canvas grows.
            assert!(
                bright.1 < 84.0 - 15.0 && (bright.0 - 84.0).abs() < 4.0,
                "{case}"
            );
            assert!(dim.0 < 84.0 - 15.0 && (dim.1 - 84.0).abs() < 4.0, "{case}");
        }
    }
}

#[test]
fn quarter_turns_move_pixels_exactly() {
    let img = Image {
        width: 4,
        height: 3,
        pixels: (0..12).map(|i| i as f32).collect(),
        rotpa: None,
        wcs: Some(matrix(90.0, false)),
    };
    let (px, w, h, fallback) = display_order(&img, Orientation::Ztf, Facing::NorthUp);
    assert_eq!((w, h, fallback), (3, 4, false));
    let mut sorted = px.clone();
    sorted.sort_by(f32::total_cmp);
    assert_eq!(sorted, img.pixels);
    // A quarter turn counter-clockwise puts the stored bottom-right corner
    // (row 0 drawn at the bottom, last column) at the top right.
    assert_eq!(px[2], 3.0);
}

#[test]
fn without_a_wcs_north_up_is_skyportal_and_says_so() {
    let bytes = f32_fits(20, 12, |i| (i % 7) as f32);
    let skyportal = CutoutSettings::default();
    for orientation in [Orientation::Ztf, Orientation::Lsst] {
        let plain = draw_stamp(&bytes, Kind::Science, orientation, &skyportal).expect("test setup");
        assert!(!plain.north_up_fallback);
        let settings = CutoutSettings {
            orientation: Facing::NorthUp,
            ..CutoutSettings::default()
        };
        let asked = draw_stamp(&bytes, Kind::Science, orientation, &settings).expect("test setup");
        assert!(asked.north_up_fallback);
        assert_eq!(asked.png, plain.png);
        assert_eq!(
            draw_bytes(&bytes, Kind::Science, orientation, &settings),
            Ok(plain.png)
        );
    }
}
