use super::*;
use crate::cutouts::{draw, Colormap, Facing};

fn image(w: usize, h: usize, f: impl Fn(usize, usize) -> f32) -> Image {
    let pixels = (0..w * h).map(|i| f(i % w, i / w)).collect();
    Image {
        width: w,
        height: h,
        pixels,
        rotpa: None,
        wcs: None,
    }
}

/// Decodes a PNG into (width, height, RGB bytes).
pub(crate) fn rgb_of(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("test setup");
    let mut buf = vec![0; reader.output_buffer_size().expect("test setup")];
    let info = reader.next_frame(&mut buf).expect("test setup");
    let channels = info.color_type.samples();
    let rgb = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, rgb)
}

#[test]
fn stretches_map_the_unit_interval_onto_itself() {
    for s in [Stretch::Linear, Stretch::Log, Stretch::Sqrt, Stretch::Asinh] {
        let mut v = [0.0, 0.5, 1.0];
        stretch(&mut v, s);
        assert!(
            v[0].abs() < 1e-6 && (v[2] - 1.0).abs() < 1e-6,
            "{s:?} {v:?}"
        );
        assert!(v[1] >= 0.5, "{s:?} {v:?}");
    }
    let mut v = [0.01];
    stretch(&mut v, Stretch::Log);
    // ln(11) / ln(1001)
    assert!((v[0] - 0.347_081).abs() < 1e-5, "{v:?}");
    let mut v = [0.05];
    stretch(&mut v, Stretch::Asinh);
    // asinh(0.5) / asinh(10)
    assert!((v[0] - 0.160_499).abs() < 1e-5, "{v:?}");
}

#[test]
fn all_nan_is_an_error_and_sentinels_are_scrubbed() {
    let s = CutoutSettings::default();
    let nan = image(16, 16, |_, _| f32::NAN);
    let err = draw(&nan, Kind::Science, Orientation::Ztf, &s).expect_err("fails");
    assert_eq!(err.reason(), "all_nan");
    let sentinels = image(16, 16, |x, _| if x < 8 { -3.4e38 } else { f32::NAN });
    assert_eq!(
        draw(&sentinels, Kind::Science, Orientation::Ztf, &s).expect_err("fails"),
        CutoutError::AllNan
    );
    let mut px = vec![1.0, f32::NAN, 3.0, -3.4e38, f32::INFINITY];
    scrub(&mut px).expect("test setup");
    assert_eq!(px, vec![1.0, 2.0, 3.0, 2.0, 2.0]);
}

#[test]
fn an_image_with_the_wrong_pixel_count_is_refused() {
    let mut img = image(16, 16, |x, _| x as f32);
    img.pixels.pop();
    let err = draw(
        &img,
        Kind::Science,
        Orientation::Ztf,
        &CutoutSettings::default(),
    );
    assert_eq!(err.expect_err("fails").reason(), "size");
}

#[test]
fn canvas_is_square_white_outside_and_row_zero_at_the_bottom() {
    // 20 wide, 40 high; row 0 bright, the rest dark.
    let img = image(20, 40, |_, y| if y < 20 { 100.0 } else { 0.0 });
    let s = CutoutSettings {
        colormap: Colormap::Gray,
        ..Default::default()
    };
    let png = draw(&img, Kind::Difference, Orientation::AsStored, &s).expect("test setup");
    let (w, h, rgb) = rgb_of(&png);
    assert_eq!((w, h), (168, 168));
    let at = |x: usize, y: usize| rgb[(y * 168 + x) * 3];
    assert_eq!(at(2, 84), 255, "left margin is white");
    assert_eq!(at(165, 84), 255, "right margin is white");
    assert_eq!(at(84, 160), 255, "AsStored: row 0 at the bottom");
    assert_eq!(at(84, 8), 0);
    // ZTF flips: row 0 on top.
    let png = draw(&img, Kind::Difference, Orientation::Ztf, &s).expect("test setup");
    let (_, _, rgb) = rgb_of(&png);
    assert_eq!(rgb[(8 * 168 + 84) * 3], 255);
    assert_eq!(rgb[(160 * 168 + 84) * 3], 0);
}

#[test]
fn constant_images_and_every_setting_draw() {
    let flat = image(8, 8, |_, _| 3.0);
    for colormap in [Colormap::Bone, Colormap::Gray, Colormap::Viridis] {
        for interval in [Interval::Percentile, Interval::Zscale] {
            for stretch in [Stretch::Linear, Stretch::Log, Stretch::Sqrt, Stretch::Asinh] {
                let s = CutoutSettings {
                    colormap,
                    interval,
                    size: 32,
                    stretch: crate::cutouts::Stretches {
                        science: stretch,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let img = image(9, 12, |x, y| (x * y) as f32);
                for i in [&flat, &img] {
                    let png = draw(i, Kind::Science, Orientation::Lsst, &s).expect("test setup");
                    assert_eq!(rgb_of(&png).0, 32);
                }
            }
        }
    }
}

#[test]
fn lsst_rotates_by_minus_rotpa() {
    let mut img = image(63, 63, |_, _| 1.0);
    img.rotpa = Some(30.0);
    let (_, w, h, _) = display_order(&img, Orientation::Lsst, Facing::Skyportal);
    assert_eq!((w, h), (86, 86));
    img.rotpa = None;
    let (_, w, _, _) = display_order(&img, Orientation::Lsst, Facing::Skyportal);
    assert_eq!(w, 63);
}

#[test]
fn maps_ending_in_white_give_indexed_pngs_and_others_rgb() {
    let img = image(20, 12, |x, y| (x * y) as f32);
    for (map, indexed) in [
        (Colormap::Bone, true),
        (Colormap::Gray, true),
        (Colormap::Viridis, false),
    ] {
        let settings = CutoutSettings {
            colormap: map,
            ..CutoutSettings::default()
        };
        let png = draw(&img, Kind::Science, Orientation::AsStored, &settings).expect("drawn");
        let info = png::Decoder::new(std::io::Cursor::new(&png))
            .read_info()
            .expect("png")
            .info()
            .color_type;
        assert_eq!(
            info == png::ColorType::Indexed,
            indexed,
            "{map:?}: {info:?}"
        );
        // White margins either way (20 x 12 is wider than tall).
        let (_, _, rgb) = rgb_of(&png);
        assert_eq!(&rgb[..3], &[255, 255, 255], "{map:?}");
    }
}
