//! Colour maps as matplotlib applies them: a 256-entry table, a value `x` in
//! [0, 1] takes entry `min(floor(256 x), 255)`, and colours become bytes as
//! `floor(255 c)`.

use std::sync::OnceLock;

use super::settings::Colormap;
use super::viridis::VIRIDIS;

/// 256 RGB entries.
pub type Lut = [[u8; 3]; 256];

/// matplotlib's `_bone_data`: per channel, (x, value) anchors of a
/// piecewise-linear map (the maps are continuous: y0 = y1 at each anchor).
const BONE_RED: &[(f64, f64)] = &[(0.0, 0.0), (0.746032, 0.652778), (1.0, 1.0)];
const BONE_GREEN: &[(f64, f64)] = &[
    (0.0, 0.0),
    (0.365079, 0.319444),
    (0.746032, 0.777778),
    (1.0, 1.0),
];
const BONE_BLUE: &[(f64, f64)] = &[(0.0, 0.0), (0.365079, 0.444444), (1.0, 1.0)];

/// The table of a colour map, built once per process.
pub fn lut(map: Colormap) -> &'static Lut {
    static BONE: OnceLock<Lut> = OnceLock::new();
    static GRAY: OnceLock<Lut> = OnceLock::new();
    static VIRIDIS_LUT: OnceLock<Lut> = OnceLock::new();
    match map {
        Colormap::Bone => BONE.get_or_init(|| {
            build(|x| {
                [
                    segment(BONE_RED, x),
                    segment(BONE_GREEN, x),
                    segment(BONE_BLUE, x),
                ]
            })
        }),
        Colormap::Gray => GRAY.get_or_init(|| build(|x| [x, x, x])),
        Colormap::Viridis => VIRIDIS_LUT.get_or_init(|| {
            let mut lut = [[0u8; 3]; 256];
            for (entry, rgb) in lut.iter_mut().zip(VIRIDIS.iter()) {
                *entry = rgb.map(|c| byte(f64::from(c)));
            }
            lut
        }),
    }
}

/// The LUT entry for `x` (clipped to [0, 1]; NaN takes entry 0).
#[inline]
pub fn index(x: f32) -> usize {
    // `as` saturates: NaN -> 0, negatives -> 0.
    ((x * 256.0) as usize).min(255)
}

fn build(f: impl Fn(f64) -> [f64; 3]) -> Lut {
    let mut lut = [[0u8; 3]; 256];
    for (i, entry) in lut.iter_mut().enumerate() {
        *entry = f(i as f64 / 255.0).map(byte);
    }
    lut
}

fn byte(c: f64) -> u8 {
    (c.clamp(0.0, 1.0) * 255.0) as u8
}

fn segment(anchors: &[(f64, f64)], x: f64) -> f64 {
    for pair in anchors.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        if x <= x1 {
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
        }
    }
    anchors.last().map_or(0.0, |&(_, y)| y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_matplotlibs() {
        for map in [Colormap::Bone, Colormap::Gray] {
            assert_eq!(lut(map)[0], [0, 0, 0]);
            assert_eq!(lut(map)[255], [255, 255, 255]);
        }
        // viridis: #440154 .. #fde725
        assert_eq!(lut(Colormap::Viridis)[0], [0x44, 0x01, 0x54]);
        assert_eq!(lut(Colormap::Viridis)[255], [0xfd, 0xe7, 0x24]);
        assert_eq!(lut(Colormap::Gray)[128], [128, 128, 128]);
    }

    #[test]
    fn bone_is_bluish_in_the_middle() {
        let [r, g, b] = lut(Colormap::Bone)[96];
        assert!(b > g && g > r, "{r} {g} {b}");
    }

    #[test]
    fn index_clips() {
        assert_eq!(index(-1.0), 0);
        assert_eq!(index(f32::NAN), 0);
        assert_eq!(index(0.5), 128);
        assert_eq!(index(1.0), 255);
        assert_eq!(index(7.0), 255);
    }
}
